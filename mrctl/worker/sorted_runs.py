"""A reduce task's input larger than its worker's memory: sorted runs on the worker's own disk,
merged a key at a time.

A partition too large for Redis to hold back at once reaches its reduce task as a feed
(keys.feed, mrctl.master.partition_feed): its map blobs one by one, in map index order. Every
RUN_BYTES of them (compressed, as fed) are grouped by key and sorted in memory as an ordinary
reduce task's whole input is (tasks.merge_blobs, tasks.sorted_groups), then written to a run
file; at the end the runs are merged (heapq.merge), as Hadoop's reducers merge the map outputs
they fetched. Only the runs' read buffers and the key being reduced are held decoded, whatever
the partition's size.

The order is the in-memory path's exactly: keys in codec.sort_key order (keys with equal sort
keys in the order they were first met), and a key's values in blob order (runs are merged
stably: an earlier run's entry comes first).
"""

from __future__ import annotations

import heapq
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from mrctl.io import codec
from mrctl.worker import tasks

RUN_BYTES = 8 << 20  # fed blob bytes (compressed) grouped and sorted in memory into one run


class SortedRuns:
    """Blobs added in order; `groups()`: (key, values) in key order. Owns a temp directory
    (mkdtemp: 0700, in TMPDIR) removed on exit."""

    def __init__(self, run_bytes: int = RUN_BYTES) -> None:
        self.run_bytes = run_bytes
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._runs: list[Path] = []
        self._dir: Path | None = None

    def __enter__(self) -> SortedRuns:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def runs(self) -> int:
        """How many runs went to disk so far."""
        return len(self._runs)

    def add(self, blob: bytes) -> None:
        """The next blob of the partition (map index order)."""
        self._pending.append(blob)
        self._pending_bytes += len(blob)
        if self._pending_bytes >= self.run_bytes:
            self._write_run()

    def groups(self) -> Iterator[tuple[Any, list[Any]]]:
        """Every key with all its values, in key order: from memory when nothing went to disk."""
        if not self._runs:
            return tasks.sorted_groups(tasks.merge_blobs(self._pending))
        if self._pending:
            self._write_run()
        return _merged(self._runs)

    def _write_run(self) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="mrctl-reduce-"))
        flat: list[Any] = []
        for key, values in tasks.sorted_groups(tasks.merge_blobs(self._pending)):
            flat += (key, values)
        path = self._dir / f"run-{len(self._runs)}"
        path.write_bytes(codec.pack_blob(flat))
        self._runs.append(path)
        self._pending, self._pending_bytes = [], 0


def _run_pairs(path: Path) -> Iterator[tuple[Any, Any]]:
    with path.open("rb") as raw:
        yield from codec.stream_pairs(raw)


def _merged(paths: list[Path]) -> Iterator[tuple[Any, list[Any]]]:
    """The runs' entries merged by sort key; a key met in several runs gets their values in run
    order. Keys whose sort keys tie (distinct keys rarely do: dicts with their items in another
    order) keep the order in which they were first met, as sorted() keeps it in memory."""
    sort_key, group_key = codec.sort_key, codec.group_key
    merged = heapq.merge(*(_run_pairs(p) for p in paths), key=lambda kv: sort_key(kv[0]))
    tied: dict[Any, tuple[Any, list[Any]]] = {}  # the entries of the current sort key, by identity
    current: Any = None
    for key, values in merged:
        order = sort_key(key)
        if tied and order != current:
            yield from tied.values()
            tied = {}
        current = order
        ident = key if type(key) is str else group_key(key)
        found = tied.get(ident)
        if found is None:
            tied[ident] = (key, list(values))
        else:
            found[1].extend(values)
    yield from tied.values()
