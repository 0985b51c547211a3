"""Cutting input files into chunks on record boundaries.

For text and JSON lines, planning seeks instead of reading: a boundary is the first newline at
or after each multiple of `chunk_size`, so the plan (and the number of map tasks) is known
before any data is sent, and a line longer than `chunk_size` simply makes a bigger chunk. CSV
and delimited records are scanned once (mrctl.io.formats.boundaries) so that no chunk splits a
record. A compressed file, or a whole_file input, is one chunk: its bytes as stored (a
compressed file is decompressed by the worker that maps it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mrctl.errors import SpecError
from mrctl.io.formats import ChunkFormat, InputFormat, boundaries, compression_of

_SCAN = 64 * 1024


class InputChanged(SpecError):
    """An input file vanished, became unreadable or changed while the job ran."""


@dataclass(frozen=True)
class ChunkRef:
    """Bytes [start, end) of `path`; always whole records. `stamp` is the file's (size, mtime)
    when the plan was made: reading a file that changed since is refused. `fmt` tells the map
    task how to parse the bytes. `input` is the index of the naming it came from among the
    job's inputs: a file named twice is one path but two inputs, with two names and tags."""

    path: Path
    start: int
    end: int
    stamp: tuple[int, int] = (-1, -1)
    fmt: ChunkFormat = ChunkFormat()
    input: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start


def plan_chunks(paths: tuple[Path, ...] | list[Path], chunk_size: int,
                formats: tuple[InputFormat, ...] = ()) -> list[ChunkRef]:
    """Every chunk of every input file, in input order (a path given twice is cut twice, each
    chunk knowing which input it is); `formats` pairs with `paths` (default: all text). Empty
    files make no chunk, except as whole_file (an empty record)."""
    plan: list[ChunkRef] = []
    for i, path in enumerate(paths):
        plan.extend(_file_chunks(path, chunk_size, formats[i] if formats else InputFormat(), i))
    return plan


def _file_chunks(path: Path, chunk_size: int, form: InputFormat, index: int) -> Iterator[ChunkRef]:
    with _open(path) as f:
        info = os.fstat(f.fileno())
        size, stamp = info.st_size, (info.st_size, info.st_mtime_ns)
        compression = compression_of(path)
        fmt = ChunkFormat(form.kind, form.delimiter, compression=compression)
        if form.kind == "whole_file" or (compression and size):
            yield ChunkRef(path, 0, size, stamp, fmt, index)
        elif form.kind == "csv":
            header, body = boundaries.csv_header(f, size)  # the header row is not a record
            fmt = ChunkFormat("csv", header=header)
            for start, end in boundaries.cut(boundaries.csv_record_ends(f, size), body, size, chunk_size):
                yield ChunkRef(path, start, end, stamp, fmt, index)
        elif form.kind == "records":
            ends = boundaries.delimited_record_ends(f, size, (form.delimiter or "").encode())
            for start, end in boundaries.cut(ends, 0, size, chunk_size):
                yield ChunkRef(path, start, end, stamp, fmt, index)
        else:
            yield from _line_chunks(f, path, size, stamp, chunk_size, fmt, index)


def _line_chunks(f: BinaryIO, path: Path, size: int, stamp: tuple[int, int], chunk_size: int,
                 fmt: ChunkFormat, index: int) -> Iterator[ChunkRef]:
    start = 0
    while start < size:
        end = _line_end_after(f, start + chunk_size, size)
        yield ChunkRef(path, start, end, stamp, fmt, index)
        start = end


def read_chunk(ref: ChunkRef) -> bytes:
    """The chunk's bytes; InputChanged if its file changed or vanished since the plan."""
    with _open(ref.path) as f:
        return _read_from(f, ref)


class ChunkReader:
    """read_chunk for chunks in plan order, keeping the current file open: tiny chunks cost one
    open per file, not one per chunk. Each read still checks the file against the plan."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._file: BinaryIO | None = None

    def read(self, ref: ChunkRef) -> bytes:
        if self._file is None or ref.path != self._path:
            self.close()
            self._file, self._path = _open(ref.path), ref.path
        return _read_from(self._file, ref)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._path = None


def _read_from(f: BinaryIO, ref: ChunkRef) -> bytes:
    info = os.fstat(f.fileno())
    if ref.stamp != (-1, -1) and (info.st_size, info.st_mtime_ns) != ref.stamp:
        raise InputChanged(f"input file {display_path(ref.path)} changed during the run (size "
                           f"{ref.stamp[0]} -> {info.st_size} bytes): the output would mix two "
                           "versions of it; run the job again on a file that stays put")
    f.seek(ref.start)
    return f.read(ref.size)


def lines_before(ref: ChunkRef) -> int:
    """How many lines of its file precede a chunk (a file's first chunk starts past a CSV
    header); counted from the file, which only a first chunk needs."""
    with _open(ref.path) as f:
        return f.read(ref.start).count(b"\n")


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputChanged(f"input file {display_path(path)} vanished during the run") from None
    except OSError as exc:
        raise InputChanged(f"cannot read input file {display_path(path)}: {exc.strerror}") from None


def display_path(path: Path | str) -> str:
    """A path as text that any channel can carry (Redis, JSON, a terminal): a file name that is
    not UTF-8 keeps its undecodable bytes as \\x escapes."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _line_end_after(f, pos: int, size: int) -> int:
    """The offset just past the first newline at or after `pos - 1`, or `size`."""
    if pos >= size:
        return size
    f.seek(pos - 1)
    offset = pos - 1
    while True:
        block = f.read(_SCAN)
        if not block:
            return size
        nl = block.find(b"\n")
        if nl >= 0:
            return offset + nl + 1
        offset += len(block)
