"""A job's input files, from what the spec or `--input` says: paths, directories and globs,
each optionally a mapping `{path: ..., tag: ..., format: ...}` so that job code can tell inputs
apart and read records other than lines (mrctl.io.formats).

Each file keeps the name the user gave it (relative to the spec, or to the current directory
for `--input`: `data/` gives `data/cafe.txt`, `./x*` gives `./x1`), which job code sees as
`self.input_path`; it is read through its symlinks. A file named twice (`x` and `./x`, a path and
a symlink to it, a directory and a file in it) is read twice, once per name, as mrjob and Hadoop
read it: an input list is a list of namings, not a set of files, and which naming to drop would
be a guess (see `named_twice` for the warning a run prints).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrctl.errors import SpecError
from mrctl.io.chunks import display_path
from mrctl.io.formats import InputFormat, implied_format, parse_format

INPUT_KEYS = ("path", "tag", "format")


@dataclass(frozen=True)
class InputFile:
    path: Path  # absolute, symlinks resolved: what is read
    name: str  # as the user named it
    tag: str | None = None
    format: InputFormat = InputFormat()  # as its entry says, else as its extension implies


def expand_inputs(entries: list[Any], base: Path, where: str) -> tuple[InputFile, ...]:
    """Files named by each entry (file, directory or glob, or a mapping holding one), in order,
    each entry's files sorted; one InputFile per naming, so a file named twice is read twice."""
    found: list[InputFile] = []
    for entry in entries:
        pattern, tag, fmt = _entry(entry, where)
        for path, name in _files(pattern, base, where):
            found.append(InputFile(path, name, tag, fmt or implied_format(path)))
    return tuple(found)


def named_twice(paths: tuple[Path, ...], names: tuple[str, ...]) -> str | None:
    """What to tell the user when some file is read under more than one name, else None."""
    names_of: dict[Path, list[str]] = {}
    for path, name in zip(paths, names, strict=True):
        names_of.setdefault(path, []).append(name)
    repeated = [(path, shown) for path, shown in names_of.items() if len(shown) > 1]
    if not repeated:
        return None
    path, shown = repeated[0]
    listed = ", ".join(shown[:4]) + (", ..." if len(shown) > 4 else "")
    others = f"; so are {len(repeated) - 1} more file(s)" if len(repeated) > 1 else ""
    return (f"input file {display_path(path)} is named {len(shown)} times ({listed}) and is read once per "
            f"name, as mrjob and Hadoop read it{others}")


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
    """(path to read, name) of each file `pattern` names: itself, the files under it, or what it
    matches as a glob (a matched directory gives the files under it, as mrjob reads it)."""
    place = os.path.join(base, pattern)
    if os.path.isfile(place) or os.path.isdir(place):
        return _named(place, pattern, where)
    _refuse_broken_link(place, pattern, where)
    matches = sorted(glob.glob(pattern, root_dir=None if os.path.isabs(pattern) else base, recursive=True))
    files: dict[str, Path] = {}  # by name: `data/**` matches data/ and each file under it
    for match in matches:
        for path, name in _named(os.path.join(base, match), match, where, in_glob=True):
            files.setdefault(name, path)
    if not files:
        raise SpecError(f"{where}: {pattern!r} matches no file (relative to {base})")
    return [(path, name) for name, path in files.items()]


def _named(place: str, name: str, where: str, in_glob: bool = False) -> list[tuple[Path, str]]:
    """The file at `place` (named `name`), or the files under the directory there."""
    _refuse_broken_link(place, name, where)
    if os.path.isfile(place):
        return [(Path(os.path.realpath(place)), name)]
    if not os.path.isdir(place):
        return []  # a socket or device a glob matched: not a file to read
    found: list[tuple[tuple[str, ...], Path]] = []
    real = os.path.realpath(place)
    _walk(place, real, (), frozenset({real}), found, name, where)
    if not found and not in_glob:
        raise SpecError(f"{where}: directory {name!r} holds no files")
    return [(path, os.path.join(name, *parts)) for parts, path in sorted(found)]


def _walk(directory: str, real: str, parts: tuple[str, ...], ancestors: frozenset[str],
          found: list[tuple[tuple[str, ...], Path]], root: str, where: str) -> None:
    """Every file under `directory` (whose real path is `real`), hidden ones skipped, symlinked
    directories followed (as mrjob walks them); a symlink back to a directory it is in would
    never end: refused."""
    try:
        with os.scandir(directory) as listing:
            entries = list(listing)
    except OSError as exc:
        raise SpecError(f"{where}: cannot list directory {os.path.join(root, *parts)!r}: {exc.strerror}") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        here = (*parts, entry.name)
        if entry.is_symlink():  # only a link costs a lookup: the rest is known from the listing
            _refuse_broken_link(entry.path, os.path.join(root, *here), where)
            target = os.path.realpath(entry.path)
            is_file, is_dir = os.path.isfile(target), os.path.isdir(target)
        else:
            target = os.path.join(real, entry.name)
            is_file, is_dir = entry.is_file(follow_symlinks=False), entry.is_dir(follow_symlinks=False)
        if is_file:
            found.append((here, Path(target)))
        elif is_dir:
            if target in ancestors:
                raise SpecError(f"{where}: {os.path.join(root, *here)!r} links back to {target}, a directory "
                                "it is in: reading it would never end")
            _walk(entry.path, target, here, ancestors | {target}, found, root, where)


def _refuse_broken_link(place: str, name: str, where: str) -> None:
    if os.path.islink(place) and not os.path.exists(place):
        raise SpecError(f"{where}: {name!r} is a symlink to {os.readlink(place)!r}, which does not exist")
