"""Cutting input files into chunks on line boundaries.

Planning seeks instead of reading: a boundary is the first newline at or after each multiple of
`chunk_size`, so the plan (and the number of map tasks) is known before any data is sent, and a
line longer than `chunk_size` simply makes a bigger chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_SCAN = 64 * 1024


@dataclass(frozen=True)
class ChunkRef:
    """Bytes [start, end) of `path`; always whole lines."""

    path: Path
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def plan_chunks(paths: tuple[Path, ...] | list[Path], chunk_size: int) -> list[ChunkRef]:
    """Every chunk of every input file, in input order. Empty files make no chunk."""
    plan: list[ChunkRef] = []
    for path in paths:
        plan.extend(_file_chunks(path, chunk_size))
    return plan


def _file_chunks(path: Path, chunk_size: int) -> Iterator[ChunkRef]:
    size = path.stat().st_size
    start = 0
    with path.open("rb") as f:
        while start < size:
            end = _line_end_after(f, start + chunk_size, size)
            yield ChunkRef(path, start, end)
            start = end


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


def read_chunk(ref: ChunkRef) -> bytes:
    with ref.path.open("rb") as f:
        f.seek(ref.start)
        return f.read(ref.size)
