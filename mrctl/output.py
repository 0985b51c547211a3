"""Writing a job's output atomically: a temp file beside the target, then os.replace.

A failed or interrupted run never leaves a partial output file or a temp file behind.
Formats: json (one object, keys in sorted order), jsonl ({"key", "value"} per line), tsv.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mrctl.errors import JobFailed, SpecError


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
            v = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            yield f"{key_text(key)}\t{v}\n"
    else:
        raise SpecError(f"unknown output format {fmt!r}")


def write_output(path: Path, pairs: Iterable[tuple[Any, Any]], fmt: str) -> int:
    """Write `pairs` (already sorted) to `path` atomically; returns the number of pairs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0

    def counted() -> Iterable[tuple[Any, Any]]:
        nonlocal count
        for pair in pairs:
            count += 1
            yield pair

    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(_lines(counted(), fmt))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; an output is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
