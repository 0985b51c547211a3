"""A job's input files, from what the spec or `--input` says: paths, directories and globs,
each optionally a mapping `{path: ..., tag: ..., format: ...}` so that job code can tell inputs
apart and read records other than lines (mrctl.formats).

Each file keeps the name the user gave it (relative to the spec, or to the current directory
for `--input`: `data/` gives `data/cafe.txt`), which job code sees as `self.input_path`.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrctl.errors import SpecError
from mrctl.formats import InputFormat, implied_format, parse_format

INPUT_KEYS = ("path", "tag", "format")


@dataclass(frozen=True)
class InputFile:
    path: Path  # absolute
    name: str  # as the user named it
    tag: str | None = None
    format: InputFormat = InputFormat()  # as its entry says, else as its extension implies


def expand_inputs(entries: list[Any], base: Path, where: str) -> tuple[InputFile, ...]:
    """Files named by each entry (file, directory or glob, or a mapping holding one), in order,
    each entry's files sorted; a file named twice counts once (its first naming wins)."""
    found: dict[Path, InputFile] = {}
    for entry in entries:
        pattern, tag, fmt = _entry(entry, where)
        for path, name in _files(pattern, base, where):
            found.setdefault(path, InputFile(path, name, tag, fmt or implied_format(path)))
    return tuple(found.values())


def _entry(entry: Any, where: str) -> tuple[str, str | None, InputFormat | None]:
    if isinstance(entry, str) and entry:
        return entry, None, None
    if isinstance(entry, dict):
        unknown = sorted(set(entry) - set(INPUT_KEYS))
        if unknown:
            raise SpecError(f"{where}: unknown key {unknown[0]!r} in an input; expected {', '.join(INPUT_KEYS)}")
        path, tag, fmt = entry.get("path"), entry.get("tag"), entry.get("format")
        if not isinstance(path, str) or not path:
            raise SpecError(f"{where}: an input mapping needs path: (a file, directory or glob), got {path!r}")
        if tag is not None and not isinstance(tag, str):
            raise SpecError(f"{where}: tag: expected a string, got {tag!r}")
        return path, tag, parse_format(fmt, where) if fmt is not None else None
    raise SpecError(f"{where}: expected a path, directory or glob, a mapping {{path, tag, format}}, or a list "
                    f"of them, got {entry!r}")


def _files(pattern: str, base: Path, where: str) -> list[tuple[Path, str]]:
    path = (base / pattern).resolve()
    if path.is_file():
        return [(path, pattern)]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise SpecError(f"{where}: directory {pattern!r} holds no files")
        return [(p.resolve(), os.path.join(pattern, str(p.relative_to(path)))) for p in files]
    matches = sorted(p for p in glob.glob(str(base / pattern), recursive=True) if Path(p).is_file())
    if not matches:
        raise SpecError(f"{where}: {pattern!r} matches no file (relative to {base})")
    root = str(base) + os.sep
    return [(Path(p).resolve(), p.removeprefix(root) if not os.path.isabs(pattern) else p) for p in matches]
