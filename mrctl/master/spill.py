"""The master's disk, for what leaves Redis so that Redis stays a bounded window both ways.

- Committed map partitions, once Redis passes its high-water mark during a map phase: each
  partition r's blobs (map index -> blob, compressed as the workers committed them) are
  appended to a file of their own, and put back into Redis, a few partitions at a time, just
  before reduce task r is queued (mrctl.master.loop); a partition larger than Redis can take
  back at once is fed to its reduce task a window at a time instead (mrctl.master.partition_feed).
- Reduce outputs of the last step: moved to files as the merge needs them, and merged from
  there a pair at a time (msgpack's streaming Unpacker, zstd's stream reader), so the master's
  memory stays flat however large the output.
- Reduce outputs of an earlier step, once Redis passes its mark during that step's reduce
  phase: each is the input of a map task of the next step, queued with it from the file, a few
  at a time, instead of moved inside Redis (mrctl.master.loop). A map-only step's map outputs go
  the same way during its map phase, each as the output of its index.

The files are mrctl.master.spill_store's.
"""

from __future__ import annotations

import heapq
import io
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mrctl.broker import FULL_ADVICE, Broker, RedisFull
from mrctl.io import codec
from mrctl.io.task_ids import map_tid, reduce_tid, tid_index
from mrctl.master.partition_feed import PartitionFeeds
from mrctl.master.spill_store import SpillStore

log = logging.getLogger(__name__)


SPILL_AT = 0.3  # Redis used_memory / maxmemory past which committed map output moves to disk
DRAIN_AT = 0.25  # ... past which committed reduce outputs do
RESTORE_BUDGET = 0.2  # share of maxmemory that spilled partitions (or step outputs) may take back at once
TAKE_BUDGET = 0.1  # ... and one take of a map-only step's outputs (its reply is built in Redis)
CARRY_BUDGET = 0.125  # ... and an earlier step's spilled outputs, as the next step's input (the input window's share)
REFUSAL_BURST_S = 0.5  # refusals for memory this soon after the first are the same burst ...
RECOVERED_AFTER_S = 30.0  # ... later ones fail the job, unless Redis refused nothing this long
LOOK_EVERY_S = 0.05  # how often the master reads Redis's memory use (INFO memory)


@dataclass
class Spiller:
    """The master's half of spilling, step by step: moves committed partitions and outputs
    out of Redis past SPILL_AT of its memory, and feeds reduce tasks their spilled partitions
    back through a window (RESTORE_BUDGET), and an earlier step's spilled outputs to the next
    step's map tasks the same way. Fencing is untouched: only committed data moves, and a
    commit that lands after a partition was taken lands in a fresh hash, restored with the
    rest."""

    broker: Broker
    store: SpillStore = field(default_factory=SpillStore)
    clock: Callable[[], float] = time.monotonic
    job: str = ""
    reducers: int = 0
    limit: int = 0  # Redis maxmemory (0: no limit, nothing ever spills)
    _next: int = 0  # the next reduce partition to queue
    _inflight: dict[int, int] = field(default_factory=dict)  # queued, restored partition -> bytes
    _drained: set[int] = field(default_factory=set)  # outputs moved to disk
    _kept: set[int] = field(default_factory=set)  # outputs too big to drain before the last step
    _next_look: float = 0.0
    _carried: tuple[str, list[int]] = ("", [])  # the step before's outputs on disk, to feed
    _carried_inflight: dict[int, int] = field(default_factory=dict)  # queued map task -> bytes
    _refused: int | None = None  # Redis's count of writes refused for memory when the run began
    _refused_last: int | None = None  # ... at the last look
    _refusing_since: float | None = None  # when refusals began, while they go on
    _last_refusal: float = 0.0
    feeds: PartitionFeeds = field(init=False)  # partitions too large to restore at once

    def __post_init__(self) -> None:
        self.feeds = PartitionFeeds(self.broker, self.store)

    def begin_step(self, job: str, reducers: int, limit: int) -> None:
        """A step begins: the outputs of the one before that went to disk are carried over."""
        self._carried = (self.job, sorted(self._drained))
        self.job, self.reducers, self.limit = job, reducers, limit
        self.feeds.begin_step(job)
        self._next, self._inflight, self._drained, self._kept, self._carried_inflight = 0, {}, set(), set(), {}

    def carried(self) -> set[int]:
        """Which outputs of the step before are on disk (their map tasks come from feed_carried)."""
        return set(self._carried[1])

    def relieve(self, phase: str, last_step: bool) -> None:
        """Each master tick: past SPILL_AT of Redis in a map phase, move committed map output
        to disk; past DRAIN_AT in a reduce phase, committed outputs, and in a map-only step's
        map phase its committed map outputs (before the last step, not those the next step
        could not take back: they stay to be moved inside Redis); a full Redis fails the job
        (RedisFull, exit 3)."""
        now = self.clock()
        if not self.limit or now < self._next_look:
            return
        self._next_look = now + LOOK_EVERY_S
        memory = self.broker.memory()
        used = memory.used
        if self._refused is None:
            self._refused = self._refused_last = memory.refused  # a warm cluster's counts earlier jobs'
        refusing = self._refusing(memory.refused, now)
        # noeviction: past maxmemory writes are refused (commits, heartbeats): attempts would
        # fail and be lost over and over while Redis stays full
        if used >= self.limit or refusing:
            refused = memory.refused - self._refused
            raise RedisFull(f"Redis is full: {used / 1e6:.0f} MB used of its {self.limit / 1e6:.0f} MB maxmemory"
                            f"{f', {refused} writes refused' if refused else ''}, and mrctl never lets it drop data. "
                            f"{FULL_ADVICE}")
        relieve_now = self._refusing_since == now  # the first refusals: relieve Redis whatever its use
        if phase == "map" and not self.reducers and (relieve_now or used > DRAIN_AT * self.limit):
            self.drain_map_outputs(largest=None if last_step else int(RESTORE_BUDGET * self.limit))
        elif phase == "map" and (relieve_now or used > SPILL_AT * self.limit):
            self.spill_partitions()
        elif phase == "reduce" and (relieve_now or used > DRAIN_AT * self.limit):
            self.drain_outputs(largest=None if last_step else int(RESTORE_BUDGET * self.limit))

    def _refusing(self, refused: int, now: float) -> bool:
        """Whether Redis goes on refusing writes for memory (INFO errorstats) after the first
        refusals were met by relief. A moment's refusal (a burst of replies and commits between
        two looks) is retried by whoever was refused and relieved at once; refused again,
        REFUSAL_BURST_S or more after the first and before it has been quiet for
        RECOVERED_AFTER_S, Redis stays full (a refused commit comes back each time its task is
        tried again)."""
        new, self._refused_last = refused - (self._refused_last or 0), refused
        if self._refusing_since is None:
            if new:
                log.warning("Redis refused %d writes for want of memory: moving committed data to disk now", new)
                self._refusing_since = self._last_refusal = now
            return False
        if new:
            again, self._last_refusal = now - self._refusing_since >= REFUSAL_BURST_S, now
            return again
        if now - self._last_refusal >= RECOVERED_AFTER_S:
            self._refusing_since = None  # it recovered
        return False

    def spill_partitions(self) -> None:
        """Map phase, Redis past its mark: every committed partition blob goes to disk."""
        for r in range(self.reducers):
            if blobs := self.broker.take_partition(self.job, r):
                self.store.add_partition(self.job, r, blobs)
        log.info("spilled map output to disk: %.1f MB so far", self.store.spilled_bytes / 1e6)

    def queue_reduces(self) -> None:
        """At the barrier, and then each tick: queue reduce tasks, restoring spilled partitions
        no more than RESTORE_BUDGET of Redis at a time (at least one); one larger than that is
        fed to its task (mrctl.master.partition_feed) within the same budget."""
        budget = int(RESTORE_BUDGET * self.limit)
        if self._next < self.reducers and not self.store.has_partitions(self.job):  # nothing spilled: all at once
            self.broker.add_reduce_tasks(self.job, range(self._next, self.reducers))
            self._next = self.reducers
            return
        if self._inflight:
            for tid in self.broker.done_tasks(self.job, [reduce_tid(r) for r in self._inflight]):
                del self._inflight[tid_index(tid)]
        while self._next < self.reducers:
            r, size = self._next, self.store.partition_bytes(self.job, self._next)
            if size > budget:
                self._feed_partition(r, budget)
                continue
            in_redis = sum(self._inflight.values()) + self.feeds.in_flight()
            if in_redis and in_redis + size > budget:
                break
            self.broker.restore_partition(self.job, r, self.store.take_partition(self.job, r))
            self.broker.add_reduce_tasks(self.job, [r])
            self._inflight[r] = size
            self._next += 1
        self.feeds.tick(budget, restored=sum(self._inflight.values()))

    def _feed_partition(self, r: int, budget: int) -> None:
        """Partition r is too large to restore: what of it is still in Redis joins what is on
        disk, and its reduce task is queued to be fed it."""
        if blobs := self.broker.take_partition(self.job, r):
            self.store.add_partition(self.job, r, blobs)
        largest = max(place.size for place in self.store.partition_places(self.job, r))
        if largest > budget:
            raise RedisFull(f"a map task's output for partition {r} is {largest / 1e6:.1f} MB (compressed), more "
                            f"than {RESTORE_BUDGET:.0%} of Redis's {self.limit / 1e6:.0f} MB can take at once. "
                            "A smaller chunk_size, more reducers or more --redis-memory help.")
        self.feeds.add(r)
        self.broker.add_reduce_tasks(self.job, [r], fed=True)
        self._next += 1

    def feed_carried(self, fields: Callable[[int], dict[str, Any]]) -> None:
        """Map phase, each tick: queue the map tasks whose input (an output of the step before)
        is on disk, with that input, no more than CARRY_BUDGET of Redis at a time (at least
        one, up to RESTORE_BUDGET); `fields(i)` are task i's fields."""
        job, waiting = self._carried
        if not waiting:
            return
        for tid in self.broker.done_tasks(self.job, [map_tid(i) for i in self._carried_inflight]):
            del self._carried_inflight[tid_index(tid)]
        while waiting:
            i, size = waiting[0], self.store.output_bytes(job, waiting[0])
            if size > RESTORE_BUDGET * self.limit:
                raise RedisFull(f"output {i} of the step before holds {size / 1e6:.1f} MB (compressed), more than "
                                f"{RESTORE_BUDGET:.0%} of Redis's {self.limit / 1e6:.0f} MB can take back at once for "
                                f"its map task. More reducers in that step (smaller outputs), or more --redis-memory "
                                "help.")
            if self._carried_inflight and sum(self._carried_inflight.values()) + size > CARRY_BUDGET * self.limit:
                return
            self.broker.add_map_tasks(self.job, [(map_tid(i), {**fields(i), "kind": "map", "index": i},
                                                  self.store.take_output(job, i))])
            self._carried_inflight[i] = size
            waiting.pop(0)

    def drain_outputs(self, everything: bool = False, largest: int | None = None) -> None:
        """Move committed reduce outputs to disk (everything: the last step's, at the end),
        those of at most `largest` bytes when given."""
        left = [r for r in range(self.reducers) if r not in self._drained and (everything or r not in self._kept)]
        done = left if everything else [tid_index(t)
                                        for t in self.broker.done_tasks(self.job, [reduce_tid(r) for r in left])]
        if largest is not None and done:
            sizes = self.broker.output_sizes(self.job, done)
            self._kept.update(r for r in done if sizes[r] > largest)  # committed: their size is final
            done = [r for r in done if r not in self._kept]
        for r in done:
            self.store.add_output(self.job, r, self.broker.take_output(self.job, r), spilled=not everything)
            self._drained.add(r)

    def drain_map_outputs(self, largest: int | None = None) -> None:
        """A map-only step's committed map outputs to disk (index i as output i, as a reduce
        step's are by partition), those of at most `largest` bytes when given."""
        sizes = self.broker.map_output_sizes(self.job)
        if largest is not None:
            self._kept.update(i for i, size in sizes.items() if size > largest)
        wanted = sorted(i for i in sizes if i not in self._kept)
        batch: list[int] = []
        batch_bytes = 0
        for i in wanted:
            batch.append(i)
            batch_bytes += sizes[i]
            # a take's reply is built inside Redis: a fraction of it at a time, not all it holds
            if batch_bytes >= TAKE_BUDGET * self.limit or i == wanted[-1]:
                for index, blob in self.broker.take_map_outputs(self.job, batch).items():
                    self.store.add_output(self.job, index, blob)
                    self._drained.add(index)
                batch, batch_bytes = [], 0

    def map_output_pairs(self, index: int) -> Iterator[tuple[Any, Any]]:
        """A map-only last step's output pairs of map task `index`, from disk or Redis, one
        pair at a time (the blob from Redis is held as it came, compressed, never decoded whole)."""
        if index in self._drained:
            return self.store.output_pairs(self.job, index, remove=True)
        blob = self.broker.map_output(self.job, index)
        return codec.stream_pairs(io.BytesIO(blob)) if blob is not None else iter(())

    def output_pairs(self) -> Iterator[tuple[Any, Any]]:
        """The last step's output pairs in key order, merged from disk a pair at a time."""
        self.drain_outputs(everything=True)
        return heapq.merge(*(self.store.output_pairs(self.job, r) for r in range(self.reducers)),
                           key=lambda kv: codec.sort_key(kv[0]))
