"""Spilling (mrctl.master.spill): committed data taken out of Redis and put back, atomically."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any, NamedTuple

from mrctl.broker import keys
from mrctl.broker.base import (
    BrokerBase,
    InfraError,
    translated_errors,
)


class Shuffle(BrokerBase):
    """Partitions and outputs leaving and re-entering Redis; its memory use."""

    # -- spilling (mrctl.master.spill): committed data leaves Redis and comes back -----------------

    def take_partition(self, job: str, r: int) -> dict[int, bytes]:
        """Atomically take every committed blob of partition r out of Redis (map index ->
        blob): a commit after this lands in a fresh hash, never half in both."""
        found = self._take(self._take_hash, job, keys.part(job, r), f"spilling partition {r}")
        return {int(found[i]): found[i + 1] for i in range(0, len(found), 2)}

    def take_map_outputs(self, job: str, indices: list[int]) -> dict[int, bytes]:
        """Atomically take the committed outputs of map tasks `indices` of a map-only step
        out of Redis (index -> blob; those it emitted nothing for are not there)."""
        found = self._take(self._take_fields, job, keys.part(job, 0), "spilling map outputs", indices)
        return {int(found[i]): found[i + 1] for i in range(0, len(found), 2)}

    def map_output_sizes(self, job: str) -> dict[int, int]:
        """Bytes of each committed output of a map-only step still in Redis, by map index."""
        with translated_errors("reading map output sizes"):
            found = self._field_sizes(keys=[keys.part(job, 0)])
        return {int(found[i]): found[i + 1] for i in range(0, len(found), 2)}

    def _take(self, script: Any, job: str, source: str, doing: str, args: list[Any] | None = None) -> Any:
        """Run a lua.TAKE_* script on `source` under a key of its own, then drop that key."""
        taken = keys.taken(job, secrets.token_hex(8))
        with translated_errors(doing):
            data = script(keys=[source, taken], args=args or [])
            self.r.unlink(taken)
        return data

    def restore_partition(self, job: str, r: int, blobs: dict[int, bytes]) -> None:
        """Put spilled blobs back into partition r before its reduce task is queued."""
        if blobs:
            with translated_errors(f"restoring partition {r}"):
                self.r.hset(keys.part(job, r), mapping={str(i): b for i, b in blobs.items()})

    def feed_blobs(self, job: str, r: int, attempt: int, first: int, blobs: Sequence[bytes]) -> None:
        """Append blobs (an empty one: the end) to attempt `attempt`'s feed of partition r as its
        items `first`, `first` + 1, ... (lua.FEED_PUSH: sent again, it appends nothing twice)."""
        items = [b"%d\n%s" % (first + i, blob) for i, blob in enumerate(blobs)]
        with translated_errors(f"feeding partition {r}"):
            count = int(self._feed_push(keys=[keys.feed(job, r, attempt), keys.fed(job)],
                                        args=[f"{r}:{attempt}", first, *items]))
        if count != first + len(items):
            raise InfraError(f"the feed of partition {r} to attempt {attempt} holds {count} items where the master "
                             f"had appended {first}: was its Redis changed by something else?")

    def feed_lengths(self, job: str, feeds: Sequence[tuple[int, int]]) -> list[int]:
        """How many items each (partition, attempt) feed holds that its worker has not taken."""
        with translated_errors("reading partition feeds"):
            pipe = self.r.pipeline(transaction=False)
            for r, attempt in feeds:
                pipe.llen(keys.feed(job, r, attempt))
            return pipe.execute()

    def drop_feeds(self, job: str, feeds: Sequence[tuple[int, int]]) -> None:
        """Delete the feeds of attempts that ended (what they did not take goes with them)."""
        if feeds:
            with translated_errors("removing partition feeds"):
                pipe = self.r.pipeline(transaction=False)
                pipe.unlink(*(keys.feed(job, r, attempt) for r, attempt in feeds))
                pipe.hdel(keys.fed(job), *(f"{r}:{attempt}" for r, attempt in feeds))
                pipe.execute()

    def take_output(self, job: str, r: int) -> bytes:
        """Atomically take reduce r's committed output out of Redis."""
        data = self._take(self._take_string, job, keys.out(job, r), f"reading the output of reduce {r}")
        if data is None:
            raise InfraError(f"reduce task r:{r} committed but its output is missing from Redis")
        return data

    def output_sizes(self, job: str, rs: list[int]) -> dict[int, int]:
        """Bytes of reduce outputs in Redis, by partition (0 when absent)."""
        with translated_errors("reading output sizes"):
            pipe = self.r.pipeline(transaction=False)
            for r in rs:
                pipe.strlen(keys.out(job, r))
            return dict(zip(rs, pipe.execute(), strict=True))

    def done_tasks(self, job: str, tids: list[str]) -> set[str]:
        """Which of `tids` have committed."""
        return {tid for tid, attempt in self.committed_attempts(job, tids).items() if attempt}

    def memory(self) -> RedisMemory:
        """Redis's memory use (INFO memory), the one place it is read."""
        with translated_errors("reading memory use"):
            pipe = self.r.pipeline(transaction=False)
            pipe.info("memory")
            pipe.info("errorstats")  # Redis >= 6.2; older ones answer an empty section
            info, errors = pipe.execute(raise_on_error=False)
        if isinstance(info, Exception):
            raise InfraError(f"reading memory use: {info}")
        refused = 0 if isinstance(errors, Exception) else int((errors.get("errorstat_OOM") or {}).get("count", 0))
        return RedisMemory(int(info["used_memory"]), int(info["used_memory_peak"]), int(info.get("maxmemory", 0)),
                           refused)


class RedisMemory(NamedTuple):
    used: int  # bytes
    peak: int  # used_memory_peak
    limit: int  # maxmemory; 0 means no limit
    refused: int = 0  # writes Redis has refused for want of memory (INFO errorstats: OOM), ever

