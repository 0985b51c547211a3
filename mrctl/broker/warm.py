"""Warm clusters (mrctl up): one job at a time under a lock, each cleaned up after."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from mrctl.broker import keys, lua
from mrctl.broker.base import (
    BrokerBase,
    translated_errors,
)
from mrctl.broker.jobs import Jobs


class WarmClusters(BrokerBase):
    """The cluster lock, key cleanup, history and worker rows of a warm cluster."""

    # -- warm clusters: one job at a time, each cleaned up after --------------------------

    def acquire_cluster(self, holder: str, ttl_ms: int = keys.LOCK_TTL_MS) -> str | None:
        """Take a warm cluster's lock for a run (SET NX with a TTL); returns None when taken,
        else the value of the run holding it."""
        with translated_errors("locking the cluster"):
            if self.r.set(keys.cluster_lock(), holder, nx=True, px=ttl_ms):
                return None
            held = self.r.get(keys.cluster_lock())
        return held.decode() if held else self.acquire_cluster(holder, ttl_ms)  # it just expired

    def renew_cluster(self, holder: str, ttl_ms: int = keys.LOCK_TTL_MS) -> bool:
        """Extend the lock iff `holder` still holds it."""
        with translated_errors("renewing the cluster's lock"):
            return bool(self._renew_lock(keys=[keys.cluster_lock()], args=[holder, ttl_ms]))

    def release_cluster(self, holder: str, run: str) -> bool:
        """Release the lock iff `holder` holds it; the workers stop serving `run`, woken at
        once: each ends the run's process now, while the cluster is idle, and forks the next
        (mrctl.worker.runs), instead of when the next job is published."""
        with translated_errors("releasing the cluster's lock"):
            pipe = self.r.pipeline(transaction=False)
            self._release_lock(keys=[keys.cluster_lock(), keys.current_job()], args=[holder, run], client=pipe)
            Jobs._wake_all(pipe)
            return bool(pipe.execute()[0])

    def cluster_holder(self) -> str | None:
        """The lock's value (the running job), or None when the cluster is idle."""
        with translated_errors("reading the cluster's lock"):
            held = self.r.get(keys.cluster_lock())
        return held.decode() if held else None

    @functools.cached_property
    def _renew_lock(self) -> Any:  # registered on first use: most brokers never lock
        return self.r.register_script(lua.RENEW_LOCK)

    @functools.cached_property
    def _release_lock(self) -> Any:
        return self.r.register_script(lua.RELEASE_LOCK)

    def drop_run(self, run: str) -> int:
        """Delete every key a run left: its job's and its steps' (whatever step it ended in)."""
        return sum(self._unlink_matching(pattern) for pattern in keys.run_patterns(run))

    def drop_stale_jobs(self) -> int:
        """Delete every job's keys: on a warm cluster whose lock this run holds, any found are
        leftovers (a killed master's, or a straggler's late event)."""
        return self._unlink_matching(keys.EVERY_JOB_PATTERN)

    def _unlink_matching(self, pattern: str) -> int:
        with translated_errors("removing a finished job's keys"):
            found = list(self.r.scan_iter(match=pattern, count=1000))
            for i in range(0, len(found), 1000):
                self.r.unlink(*found[i:i + 1000])
        return len(found)

    def mark_replaced(self, worker: str) -> None:
        """Record that a dead worker has a replacement (its own heartbeats have stopped for good),
        so that a warm cluster's next run does not replace it again."""
        with translated_errors("recording a replaced worker"):
            self.r.hset(keys.workers(), worker, json.dumps({"state": "replaced"}))

    def forget_workers(self, names: Sequence[str]) -> None:
        """Drop the rows of workers that are gone for good (replaced in an earlier job)."""
        if names:
            with translated_errors("forgetting removed workers"):
                pipe = self.r.pipeline(transaction=True)
                pipe.hdel(keys.workers(), *names)
                pipe.hdel(keys.beats(), *names)
                pipe.execute()

    def record_run(self, entry: dict[str, Any]) -> None:
        """Add a finished run to the cluster's capped history, newest first."""
        with translated_errors("recording the job in the cluster's history"):
            pipe = self.r.pipeline(transaction=True)
            pipe.lpush(keys.history(), json.dumps(entry))
            pipe.ltrim(keys.history(), 0, keys.HISTORY_KEPT - 1)
            pipe.execute()

    def runs(self) -> list[dict[str, Any]]:
        """The cluster's recent runs, newest first."""
        with translated_errors("reading the cluster's history"):
            return [json.loads(item) for item in self.r.lrange(keys.history(), 0, -1)]

