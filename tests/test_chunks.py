"""Chunk planning: byte ranges on line boundaries that together cover each input file exactly.

Expected plans are either written by hand or computed by `_reference_plan`, a slow restatement
of the documented rule that scans the bytes instead of seeking.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mrctl.io.chunks import ChunkRef, plan_chunks, read_chunk


def _reference_plan(data: bytes, chunk_size: int) -> list[tuple[int, int]]:
    """Each chunk ends just past the first newline at or after start + chunk_size - 1, or at EOF."""
    line_ends = [i + 1 for i, byte in enumerate(data) if byte == ord("\n")] + [len(data)]
    plan, start = [], 0
    while start < len(data):
        target = start + chunk_size
        end = min([e for e in line_ends if e >= target] or [len(data)])
        plan.append((start, end))
        start = end
    return plan


def _ranges(refs: list[ChunkRef]) -> list[tuple[int, int]]:
    return [(ref.start, ref.end) for ref in refs]


def _file(tmp_path: Path, data: bytes, name: str = "in.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("data,chunk_size,expected", [
    (b"aa\nbb\ncc\n", 4, [(0, 6), (6, 9)]),  # 4th byte is mid-line: the chunk runs to its end
    (b"aa\nbb\ncc\n", 3, [(0, 3), (3, 6), (6, 9)]),  # a boundary exactly on a newline
    (b"aa\nbb\ncc\n", 100, [(0, 9)]),  # a chunk size beyond the file: one chunk
    (b"a\nb", 1, [(0, 2), (2, 3)]),  # the last line has no newline
    (b"no newline at all", 4, [(0, 17)]),
    (b"x" * 25 + b"\nyy\n", 10, [(0, 26), (26, 29)]),  # a line longer than the chunk size
    (b"ab\r\ncd\r\nef\r\n", 3, [(0, 4), (4, 8), (8, 12)]),  # CRLF never split from its line
    (b"\n\n\n", 1, [(0, 1), (1, 2), (2, 3)]),  # empty lines are lines
])
def test_plan_matches_hand_computed_ranges(tmp_path, data, chunk_size, expected):
    path = _file(tmp_path, data)
    plan = plan_chunks([path], chunk_size)
    assert _ranges(plan) == expected
    assert all(ref.path == path for ref in plan)


def test_a_line_longer_than_the_scan_block_makes_one_big_chunk(tmp_path):
    # 200,000 bytes without a newline: the boundary search reads several 64 KiB blocks.
    data = b"x" * 200_000 + b"\n" + b"tail\n"
    plan = plan_chunks([_file(tmp_path, data)], 1)
    assert _ranges(plan) == [(0, 200_001), (200_001, 200_006)]
    assert read_chunk(plan[1]) == b"tail\n"


def _random_text(seed: int, lines: int) -> bytes:
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        word = "".join(rng.choice("abcé \t") for _ in range(rng.randrange(0, 30)))
        out.append(word.encode() + rng.choice([b"\n", b"\r\n", b"\n\n"]))
    if seed % 2:
        out.append(b"last line without newline")
    return b"".join(out)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk_size", [1, 2, 7, 64, 1000, 10**6])
def test_chunks_are_whole_lines_that_cover_the_file_exactly(tmp_path, seed, chunk_size):
    data = _random_text(seed, lines=120)
    plan = plan_chunks([_file(tmp_path, data)], chunk_size)
    assert _ranges(plan) == _reference_plan(data, chunk_size)
    assert plan[0].start == 0 and plan[-1].end == len(data)
    assert all(a.end == b.start for a, b in zip(plan, plan[1:], strict=False))  # no gap, no overlap
    pieces = [read_chunk(ref) for ref in plan]
    assert b"".join(pieces) == data
    assert all(piece.endswith(b"\n") for piece in pieces[:-1])  # only the last may end mid-line
    assert all(len(piece) == ref.size > 0 for piece, ref in zip(pieces, plan, strict=True))


def test_files_are_planned_in_input_order_and_empty_files_make_no_chunk(tmp_path):
    first = _file(tmp_path, b"one\ntwo\n", "b.txt")
    empty = _file(tmp_path, b"", "a.txt")
    last = _file(tmp_path, b"three\n", "c.txt")
    plan = plan_chunks([first, empty, last], 4)
    assert [(ref.path, ref.start, ref.end) for ref in plan] == [
        (first, 0, 4), (first, 4, 8), (last, 0, 6)]
    assert plan_chunks([empty], 4) == []
    assert plan_chunks([], 4) == []


def test_read_chunk_reads_exactly_its_byte_range(tmp_path):
    path = _file(tmp_path, b"0123\n5678\nabcd\n")
    assert read_chunk(ChunkRef(path, 5, 10)) == b"5678\n"
    assert ChunkRef(path, 5, 10).size == 5
