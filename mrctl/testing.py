"""Helpers for a job's own unit tests: run its classes in-process on a few records.

    from mrctl.testing import run_inline
    from wordcount import WordMapper, SumReducer

    def test_counts_words():
        assert run_inline(WordMapper, SumReducer, ["a b", "b"]) == [("a", 1), ("b", 2)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mrctl.io.task_ids import map_tid, reduce_tid
from mrctl.job import Mapper, Reducer, TaskContext, with_context
from mrctl.worker import tasks


def run_inline(mapper: type[Mapper], reducer: type[Reducer], records: Iterable[str],
               combiner: type[Reducer] | None = None,
               params: Mapping[str, Any] | None = None) -> list[tuple[Any, Any]]:
    """Map `records` (text lines, one per record) as one map task, combine, reduce; returns the
    output pairs sorted by key — exactly what a distributed run of the same classes writes.
    Exceptions from the job's code propagate unchanged, with their tracebacks."""
    lines = list(records)
    if any("\n" in line for line in lines):
        raise ValueError("text records are lines: a record may not contain a newline")
    params = dict(params or {})
    map_context = TaskContext(map_tid(0), 1, params)
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    result = tasks.run_map(with_context(mapper, map_context),
                           with_context(combiner, map_context) if combiner else None, data, 1, "strict")
    reduced = tasks.run_reduce(with_context(reducer, TaskContext(reduce_tid(0), 1, params)),
                               tasks.merge_blobs(result.blobs.values()))
    return reduced.pairs
