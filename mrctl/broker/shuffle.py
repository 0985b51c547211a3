"""Spilling (mrctl.spill): committed data taken out of Redis and put back, atomically."""

from __future__ import annotations

from typing import NamedTuple

from mrctl import keys
from mrctl.broker.base import (
    BrokerBase,
    InfraError,
    translated_errors,
)


class Shuffle(BrokerBase):
    """Partitions and outputs leaving and re-entering Redis; its memory use."""

    # -- spilling (mrctl.spill): committed data leaves Redis and comes back -----------------

    def take_partition(self, job: str, r: int) -> dict[int, bytes]:
        """Atomically take every committed blob of partition r out of Redis (map index ->
        blob): a commit after this lands in a fresh hash, never half in both."""
        with translated_errors(f"spilling partition {r}"):
            pipe = self.r.pipeline(transaction=True)
            pipe.hgetall(keys.part(job, r))
            pipe.delete(keys.part(job, r))
            found, _ = pipe.execute()
        return {int(k): v for k, v in found.items()}

    def restore_partition(self, job: str, r: int, blobs: dict[int, bytes]) -> None:
        """Put spilled blobs back into partition r before its reduce task is queued."""
        if blobs:
            with translated_errors(f"restoring partition {r}"):
                self.r.hset(keys.part(job, r), mapping={str(i): b for i, b in blobs.items()})

    def take_output(self, job: str, r: int) -> bytes:
        """Atomically take reduce r's committed output out of Redis."""
        with translated_errors(f"reading the output of reduce {r}"):
            pipe = self.r.pipeline(transaction=True)
            pipe.get(keys.out(job, r))
            pipe.delete(keys.out(job, r))
            data, _ = pipe.execute()
        if data is None:
            raise InfraError(f"reduce task r:{r} committed but its output is missing from Redis")
        return data

    def done_tasks(self, job: str, tids: list[str]) -> set[str]:
        """Which of `tids` have committed."""
        with translated_errors("reading task states"):
            pipe = self.r.pipeline(transaction=False)
            for tid in tids:
                pipe.hget(keys.task(job, tid), "state")
            states = pipe.execute()
        return {tid for tid, state in zip(tids, states, strict=True) if state == b"done"}

    def memory(self) -> RedisMemory:
        """Redis's memory use (INFO memory), the one place it is read."""
        with translated_errors("reading memory use"):
            info = self.r.info("memory", "errorstats")
        return RedisMemory(int(info["used_memory"]), int(info["used_memory_peak"]), int(info.get("maxmemory", 0)),
                           int((info.get("errorstat_OOM") or {}).get("count", 0)))


class RedisMemory(NamedTuple):
    used: int  # bytes
    peak: int  # used_memory_peak
    limit: int  # maxmemory; 0 means no limit
    refused: int = 0  # writes Redis has refused for want of memory (INFO errorstats: OOM), ever

