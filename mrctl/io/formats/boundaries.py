"""Where records end in a file, for planning chunks that never split a record (master side).

Text and JSON lines end at newlines (mrctl.io.chunks seeks for those). A CSV record may span lines
(a quoted field holding a newline) and a delimited record spans many lines, so their ends are
found by one sequential scan of the file, memory-mapped: the quote state (CSV) and the
sequence of non-overlapping delimiters (records) depend on everything before a position, not
on the bytes around it. The worker parses each chunk by the same rules, so a chunk boundary is
always a record boundary there too.
"""

from __future__ import annotations

import csv
import io
import mmap
from collections.abc import Iterator
from typing import BinaryIO


def csv_record_ends(f: BinaryIO, size: int) -> Iterator[int]:
    """The offset just past each CSV record, in order (the last one is `size`).

    A line without a double quote, read at a record's start, is a whole record; a line with
    one is handed to the csv module with as many following lines as it takes to close the
    record, so quoted newlines and doubled quotes are read exactly as the worker reads them.
    """
    if size == 0:
        return
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos = 0
        while pos < size:
            line = mm.readline()
            if b'"' in line:
                taken = [len(line)]
                try:
                    next(csv.reader(_lines_from(line, mm, taken)), None)
                except csv.Error:
                    pass  # the worker meets the same error in this record and names its line
                pos += sum(taken)
            else:
                pos += len(line)
            yield pos


def _lines_from(first: bytes, mm: mmap.mmap, taken: list[int]) -> Iterator[str]:
    """`first`, then the following lines of `mm` as the csv reader asks for them."""
    yield first.decode("utf-8", "replace")
    while line := mm.readline():
        taken.append(len(line))
        yield line.decode("utf-8", "replace")


def csv_header(f: BinaryIO, size: int) -> tuple[tuple[str, ...] | None, int]:
    """The first non-blank record's fields (the header row) and the offset just past it; (None,
    size) for a file holding no row."""
    start = 0
    for end in csv_record_ends(f, size):
        f.seek(start)
        text = f.read(end - start).decode("utf-8", "replace")
        row = next(csv.reader(io.StringIO(text, newline="")), [])
        if row:
            return tuple(row), end
        start = end
    return None, size


def delimited_record_ends(f: BinaryIO, size: int, delimiter: bytes) -> Iterator[int]:
    """The offset just past each occurrence of `delimiter`, found left to right without
    overlaps (as str.split finds them), then `size`."""
    if size == 0:
        return
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos = 0
        while (found := mm.find(delimiter, pos)) >= 0:
            pos = found + len(delimiter)
            yield pos
    if pos < size:
        yield size


def cut(ends: Iterator[int], start: int, size: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """Chunks [start, end) of about `chunk_size` bytes, each ending at the first record end at
    or past start + chunk_size (a record longer than that makes a bigger chunk)."""
    for end in ends:
        if end <= start:
            continue
        if end - start >= chunk_size or end >= size:
            yield start, end
            start = end
    if start < size:
        yield start, size
