"""Partitions too large for Redis to take back at once, fed to their reduce tasks a window at a time.

A partition spilled to the master's disk in the map phase comes back into Redis whole just
before its reduce task is queued (mrctl.master.spill), when it fits in RESTORE_BUDGET of Redis.
One that does not is fed instead, as Hadoop's reducers fetch map outputs one by one: each live
attempt of its reduce task gets a list of its own (keys.feed) to which the master appends the
partition's map blobs in map index order, read from the spill file, while the bytes fed and not
yet taken stay within the budget (at least one blob per attempt), then an empty blob: the end.
The worker takes them onto its own disk as they come (mrctl.worker.sorted_runs) and wakes the
master with each. The file stays until the task commits: an attempt that ends (lost, failed,
timed out, beaten) has its feed deleted, and the next attempt is fed from the start; a
speculative backup is fed its own.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field

from mrctl.broker import Broker
from mrctl.io.task_ids import reduce_tid
from mrctl.master.spill_store import BlobPlace, SpillStore

log = logging.getLogger(__name__)


PUSH_BYTES = 32 << 20  # at most this much in one append (a command's size counts in Redis too)


@dataclass
class _Feed:
    """One attempt's feed: how far it got, and the sizes of the items it has not taken yet."""

    items: int = 0  # items appended so far: blobs in map index order, then the end (an empty one)
    untaken: collections.deque[int] = field(default_factory=collections.deque)  # oldest first


@dataclass
class PartitionFeeds:
    """The fed partitions of the current step and their attempts' feeds."""

    broker: Broker
    store: SpillStore
    job: str = ""
    _parts: dict[int, list[BlobPlace]] = field(default_factory=dict)  # fed partition -> its blobs
    _feeds: dict[tuple[int, int], _Feed] = field(default_factory=dict)  # (partition, attempt) -> feed

    def begin_step(self, job: str) -> None:
        """A new step: an earlier one's feeds went with its keys."""
        self.job, self._parts, self._feeds = job, {}, {}

    def add(self, r: int) -> None:
        """Partition r (all of it on disk now) is fed to its reduce task's attempts."""
        self._parts[r] = self.store.partition_places(self.job, r)
        log.info("partition %d (%.1f MB, %d map outputs) is fed to its reduce task a window at a time",
                 r, self.store.partition_bytes(self.job, r) / 1e6, len(self._parts[r]))

    def in_flight(self) -> int:
        """Bytes fed and not taken yet (in Redis now)."""
        return sum(sum(feed.untaken) for feed in self._feeds.values())

    def tick(self, budget: int, restored: int = 0) -> None:
        """Forget committed partitions (their files go) and ended attempts (their feeds go), then
        feed the live attempts while what is in Redis to come back (`restored` bytes of whole
        partitions and what is fed) stays within `budget`; past it, one blob still goes when
        nothing else is in Redis (a blob over the whole budget was refused by the Spiller)."""
        if not self._parts:
            return
        tids = {reduce_tid(r): r for r in self._parts}
        for tid in self.broker.done_tasks(self.job, list(tids)):
            self._finish(tids[tid])
        live = {(tids[tid], attempt) for tid, attempt in self.broker.live_attempts(self.job) if tid in tids}
        ended = [at for at in self._feeds if at not in live]
        self.broker.drop_feeds(self.job, ended)
        for at in ended:
            del self._feeds[at]
        for at in live:
            self._feeds.setdefault(at, _Feed())
        self._note_taken()
        in_redis = restored + self.in_flight()
        for (r, attempt), feed in sorted(self._feeds.items()):
            in_redis += self._top_up(r, attempt, feed, budget - in_redis, alone=in_redis == 0)

    def _finish(self, r: int) -> None:
        gone = [at for at in self._feeds if at[0] == r]
        self.broker.drop_feeds(self.job, gone)
        for at in gone:
            del self._feeds[at]
        del self._parts[r]
        self.store.remove_partition(self.job, r)

    def _note_taken(self) -> None:
        """What the workers took since the last look (each feed's length tells)."""
        feeds = [at for at, feed in self._feeds.items() if feed.untaken]
        for at, left in zip(feeds, self.broker.feed_lengths(self.job, feeds), strict=True):
            untaken = self._feeds[at].untaken
            while len(untaken) > left:
                untaken.popleft()

    def _top_up(self, r: int, attempt: int, feed: _Feed, room: int, alone: bool) -> int:
        """Append partition r's next blobs to this feed within `room` bytes (one past it when
        `alone`), and the end after the last; the bytes appended."""
        places, appended = self._parts[r], 0
        while feed.items <= len(places):
            blobs: list[bytes] = []
            size = 0
            while feed.items + len(blobs) < len(places) and size < PUSH_BYTES:
                place = places[feed.items + len(blobs)]
                if appended + size + place.size > room and not (alone and appended + size == 0):
                    break
                blobs.append(self.store.read_blob(self.job, r, place))
                size += place.size
            if feed.items + len(blobs) == len(places):
                blobs.append(b"")  # the end
            if not blobs:
                break
            self.broker.feed_blobs(self.job, r, attempt, feed.items, blobs)
            feed.items += len(blobs)
            feed.untaken.extend(len(blob) for blob in blobs)
            appended += size
        return appended
