"""A job's output: written atomically (a temp file beside the target, then os.replace) and
read back (`read_output`).

A failed or interrupted run never leaves a partial output file or a temp file behind.
Formats: json (one object, keys in sorted order; a non-string key is written as its JSON text),
jsonl ({"key", "value"} per line: types kept), tsv (key<TAB>value; in text fields a backslash,
tab, newline and carriage return are escaped as \\, \t, \n, \r, so no value can break a row;
other values as JSON), text (key<TAB>value as they are, Hadoop's text output: a streaming job's
default; a key with a tab or a key or value with a line break is refused, not written
ambiguously), csv (a header "key,value", RFC 4180 quoting; non-string values as JSON),
lines (key then value, both text, as they are, one line per pair: what `mrctl mrjob` writes,
mrjob's encoded lines, the tab inside the value; read back as (line, "")).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from mrctl.errors import JobFailed, SpecError
from mrctl.io.disk import full_disk_is_infra, mb


class _KeyText:
    """Keys as the text of a JSON object key or a TSV field, refusing two distinct keys that
    would become the same text (int 1 and str "1"; None and "null"; {1: 0} and {"1": 0}).

    Pairs arrive sorted (None, bools, numbers, strings, then lists and dicts), so only the
    texts of non-str keys, and of str keys that look like a JSON list or object, are kept.
    """

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.seen: dict[str, Any] = {}

    def __call__(self, key: Any) -> str:
        text = key if isinstance(key, str) else json.dumps(key, ensure_ascii=False)
        other = self.seen.get(text, key)
        if type(other) is not type(key) or other != key:
            raise JobFailed(
                f"{self.fmt} output cannot hold both keys {_show(other)} and {_show(key)}: both "
                f"become {json.dumps(text, ensure_ascii=False)}. Use a jsonl output (it keeps "
                "key types), or emit keys of one type")
        if not isinstance(key, str) or text[:1] in ("[", "{"):
            self.seen[text] = key
        return text


def _show(key: Any) -> str:
    return f"{key!r} ({type(key).__name__})"


def _lines(pairs: Iterable[tuple[Any, Any]], fmt: str) -> Iterable[str]:
    if fmt == "json":
        key_text = _KeyText("json")
        yield "{"
        sep = ""
        for key, value in pairs:
            yield f"{sep}{json.dumps(key_text(key), ensure_ascii=False)}: " + json.dumps(
                value, ensure_ascii=False
            )
            sep = ", "
        yield "}\n"
    elif fmt == "jsonl":
        for key, value in pairs:
            yield json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n"
    elif fmt == "tsv":
        key_text = _KeyText("tsv")
        for key, value in pairs:
            yield f"{_tsv_escape(key_text(key))}\t{_tsv_escape(_text(value))}\n"
    elif fmt == "csv":
        key_text = _KeyText("csv")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["key", "value"])
        for key, value in pairs:
            writer.writerow([key_text(key), _text(value)])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()
    elif fmt == "lines":
        for key, value in pairs:
            yield f"{key}{value}\n"
    elif fmt == "text":
        for key, value in pairs:
            key, value = _text(key), _text(value)
            if "\t" in key or any(c in key or c in value for c in "\n\r"):
                raise SpecError(f"text output writes key<TAB>value lines as they are, and the pair "
                                f"({_short(key)}, {_short(value)}) holds a {'tab' if chr(9) in key else 'line break'} "
                                "that would change what it reads back as: write .tsv (escaped) or .jsonl")
            yield f"{key}\t{value}\n"
    else:
        raise SpecError(f"unknown output format {fmt!r}")


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


_TSV_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_TSV_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def _tsv_escape(text: str) -> str:
    return "".join(_TSV_ESCAPES.get(c, c) for c in text) if any(c in text for c in "\\\t\n\r") else text


def _tsv_unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _TSV_UNESCAPES.get(m.group(1), m.group(0)), text)


def read_output(path: str | Path, fmt: str | None = None) -> Iterator[tuple[Any, Any]]:
    """The (key, value) pairs of an output file, in file order. jsonl gives keys and values
    back with their types; json gives string keys (a non-string key comes back as its JSON
    text) and typed values; tsv and csv give the text of both (tsv unescaped)."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    with path.open(encoding="utf-8", newline="") as f:
        if fmt == "json":
            yield from json.load(f).items()
        elif fmt == "jsonl":
            for line in f:
                row = json.loads(line)
                yield row["key"], row["value"]
        elif fmt == "tsv":
            for line in f:
                key, _, value = line.rstrip("\n").partition("\t")
                yield _tsv_unescape(key), _tsv_unescape(value)
        elif fmt == "csv":
            rows = csv.reader(f)
            next(rows, None)  # the header
            for key, value in rows:
                yield key, value
        elif fmt in ("lines", "txt"):
            for line in f:
                yield line.rstrip("\n"), ""
        elif fmt == "text":
            for line in f:
                key, _, value = line.rstrip("\n").partition("\t")
                yield key, value
        else:
            raise SpecError(f"{path}: unknown output format {fmt!r}; expected json, jsonl, tsv, csv or lines")


def write_output(path: Path, pairs: Iterable[tuple[Any, Any]], fmt: str, expected_pairs: int = 0) -> int:
    """Write `pairs` (already sorted) to `path` atomically; returns the number of pairs. A full
    disk is an InfraError naming the directory and about how much the output needs (from the
    share of `expected_pairs` written when it filled); nothing of the output is left behind."""
    written = {"pairs": 0, "chars": 0}

    def counted() -> Iterable[tuple[Any, Any]]:
        for pair in pairs:
            written["pairs"] += 1
            yield pair

    def sized(lines: Iterable[str]) -> Iterable[str]:
        for line in lines:
            written["chars"] += len(line)
            yield line

    def needed() -> str:  # the text written so far, scaled up to every pair
        done, share = written["chars"], written["pairs"] / expected_pairs if expected_pairs else 0
        if not 0 < share < 1:
            return f"the output needs more than the {mb(done)} written when it filled"
        return f"the output needs about {mb(done / share)} ({mb(done)} written when it filled)"

    def full() -> AbstractContextManager[None]:
        return full_disk_is_infra(path.parent, f"writing the output {path.name}", needed,
                                  "Free some space there, or write the output to another disk (--output)")

    _write_atomically(path, sized(_lines(counted(), fmt)), full)
    return written["pairs"]


def _write_atomically(path: Path, lines: Iterable[str], full: Callable[[], AbstractContextManager[None]]) -> None:
    """A temp file beside `path`, renamed into place once whole; removed on any failure (after
    `full()`, the full disk's guard, has seen it: while the disk is as full as the write left it)."""
    with full():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with full(), os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; an output is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
