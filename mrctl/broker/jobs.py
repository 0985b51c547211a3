"""The master's side: publishing a job and its tasks, reading its progress, and waking
workers and the master instead of letting them poll."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from mrctl.broker import keys
from mrctl.broker.base import (
    MAX_LOST_ATTEMPTS,
    BrokerBase,
    _attempt_member,
    _decode,
    _flat,
    translated_errors,
)
from mrctl.broker.meta import JobMeta, meta_fields
from mrctl.errors import InfraError
from mrctl.io.task_ids import MAP, REDUCE, map_tid, parse_tid, reduce_tid

ADD_CALL_BYTES = 1 << 20  # chunk bytes per ADD_MAP_TASKS call (a batch is one pipeline of such calls)


class Jobs(BrokerBase):
    """Job publication, tasks, progress and events; the wake-up lists."""

    # -- job publication (master) ---------------------------------------------------------

    def publish_job(self, job: str, meta: JobMeta, code: dict[str, str]) -> None:
        """Make `job` the cluster's current job: its settings and code first, then the pointer."""
        with translated_errors("publishing the job"):
            pipe = self.r.pipeline(transaction=True)
            pipe.hset(keys.meta(job), mapping=meta.to_redis())
            pipe.hset(keys.code(job), mapping=code)
            pipe.set(keys.current_job(), job)
            self._wake_all(pipe)  # idle workers see the new job at once
            pipe.execute()

    def add_map_task(self, job: str, tid: str, fields: dict[str, Any], chunk: bytes) -> None:
        """Atomically store a chunk and queue the map task that reads it, once (idempotent)."""
        self.add_map_tasks(job, [(tid, fields, chunk)])

    def add_map_tasks(self, job: str, batch: list[tuple[str, dict[str, Any], bytes]]) -> None:
        """add_map_task for each (tid, fields, chunk), in one script call (lua.ADD_MAP_TASKS):
        three arguments a task, the fields one JSON text, so that thousands of tiny tasks cost
        the master little to pack."""
        calls: list[tuple[Any, list, list]] = []
        size = ADD_CALL_BYTES
        for tid, fields, chunk in batch:
            if size + len(chunk) > ADD_CALL_BYTES:  # big chunks one a call: Lua holds a call's args at once
                calls.append((self._add_map_tasks, [keys.queue(job), keys.wake(), keys.done(job, MAP)],
                              [keys.task_prefix(job), keys.chunk_prefix(job)]))
                size = 0
            calls[-1][2].extend((tid, chunk, json.dumps({k: str(v) for k, v in fields.items()}, ensure_ascii=False)))
            size += len(chunk)
        with translated_errors(f"queueing {batch[0][0]}" if len(batch) == 1 else "queueing map tasks"):
            self._scripts(calls)

    def add_step_tasks(self, job: str, previous: str, map_only: bool, fields: dict[int, dict[str, Any]]) -> None:
        """Queue map tasks m:<i> of a later step (for each i of `fields`, with fields[i]), each
        reading output i of the previous step (reduce r's, or a map-only step's map i's), moved
        inside Redis into its chunk; each once (idempotent), in one round trip."""
        if not fields:
            return
        with translated_errors("queueing the step's map tasks"):
            calls = []
            for i in fields:
                tid = map_tid(i)
                source, field = (keys.part(previous, 0), str(i)) if map_only else (keys.out(previous, i), "")
                calls.append((self._add_step_task, [keys.task(job, tid), keys.queue(job), keys.chunk(job, tid),
                                                    source, keys.wake(), keys.done(job, MAP)],
                              [tid, field, "kind", "map", "index", i, *_flat(fields[i])]))
            queued = self._scripts(calls)
        lost = [i for i, answer in zip(fields, queued, strict=True) if answer == -1]
        if lost:
            raise InfraError(f"output {reduce_tid(lost[0])} of the step before ({previous}) is missing from Redis "
                             f"({len(lost)} of {len(fields)} outputs): its reduce task committed, so the "
                             "data was lost (was Redis restarted?); the step cannot go on without it")

    def drop_job(self, job: str) -> int:
        """Delete every key of a finished job (a step whose output the next step has taken)."""
        with translated_errors("removing a finished step's keys"):
            found = list(self.r.scan_iter(match=f"{keys.job_prefix(job)}*", count=1000))
            for i in range(0, len(found), 1000):
                self.r.unlink(*found[i:i + 1000])
        return len(found)

    def add_reduce_tasks(self, job: str, partitions: Iterable[int], fed: bool = False) -> None:
        """Queue reduce tasks r:<r> for the given partitions, each once (idempotent), in one
        round trip; `fed`: their input comes through keys.feed, not the partition's hash."""
        tids = [(r, reduce_tid(r)) for r in partitions]
        extra = ["feed", "1"] if fed else []
        calls = [(self._add_task, [keys.task(job, tid), keys.queue(job), keys.task(job, tid), keys.wake(),
                                   keys.done(job, REDUCE)],
                  [tid, "0", "", "kind", "reduce", "index", r, *extra]) for r, tid in tids]
        if calls:
            with translated_errors("queueing reduce tasks"):
                self._scripts(calls)

    def set_meta(self, job: str, **fields: Any) -> None:
        with translated_errors("updating the job"):
            self.r.hset(keys.meta(job), mapping=meta_fields(**fields))

    def requeue_expired(self, job: str, max_attempts: int, task_timeout: float,
                        max_lost: int = MAX_LOST_ATTEMPTS) -> int:
        """Atomically end every attempt whose lease or task_timeout ran out: requeue or fail."""
        with translated_errors("checking leases"):
            return int(self._reap(
                keys=self._fail_keys(job),
                args=[keys.task_prefix(job), max_attempts, max_lost, f"{task_timeout:g}"],
            ))

    def stats(self, job: str) -> dict[str, int]:
        """The job's stats hash: the framework's counters and the job's own (keys.stats)."""
        with translated_errors("reading progress"):
            return {k.decode(): int(v) for k, v in self.r.hgetall(keys.stats(job)).items()}

    def meta(self, job: str) -> JobMeta | None:
        """The job's settings; None when it has none (not published yet, or its keys dropped)."""
        with translated_errors("reading the job"):
            raw = _decode(self.r.hgetall(keys.meta(job)))
        return JobMeta.from_redis(raw) if raw else None

    def task(self, job: str, tid: str) -> dict[str, str]:
        """A task's record while it waits, runs or has failed (a committed task keeps only
        its attempt: committed_attempt)."""
        with translated_errors(f"reading {tid}"):
            return _decode(self.r.hgetall(keys.task(job, tid)))

    def committed_attempts(self, job: str, tids: Sequence[str]) -> dict[str, int]:
        """The attempt that committed each of `tids` (keys.done), 0 for one not committed; a
        round trip for them all."""
        with translated_errors("reading task states"):
            pipe = self.r.pipeline(transaction=False)
            for tid in tids:
                kind, index = parse_tid(tid)
                at = 4 * index
                pipe.getrange(keys.done(job, kind), at, at + 3)
            return {tid: int.from_bytes(got, "big") if len(got) == 4 else 0
                    for tid, got in zip(tids, pipe.execute(), strict=True)}

    def late_refused(self, run: str) -> int:
        """Commits refused because their step had already ended (keys.late)."""
        with translated_errors("reading refused commits"):
            return int(self.r.hget(keys.late(run), "refused") or 0)

    def committed_attempt(self, job: str, tid: str) -> int:
        return self.committed_attempts(job, [tid])[tid]

    def running(self, job: str) -> list[str]:
        """Ids of the tasks with at least one live attempt, in claim order."""
        return list(dict.fromkeys(tid for tid, _ in self.live_attempts(job)))

    def live_attempts(self, job: str) -> list[tuple[str, int]]:
        """(tid, attempt) of every live attempt, in claim order."""
        with translated_errors("reading leases"):
            return [_attempt_member(m) for m in self.r.zrange(keys.deadlines(job), 0, -1)]

    def running_attempts(self, job: str, task_timeout: float) -> tuple[list[tuple[str, int, int]], int]:
        """([(tid, attempt, claimed_ms)], server now in ms) for every live attempt."""
        with translated_errors("reading leases"):
            members = self.r.zrange(keys.deadlines(job), 0, -1, withscores=True)
            now = self.now_ms()
        timeout_ms = int(task_timeout * 1000)
        found = []
        for member, deadline in members:
            tid, attempt = _attempt_member(member)
            found.append((tid, attempt, int(deadline) - timeout_ms))
        return found, now

    def attempts_of(self, job: str, worker: str) -> list[tuple[str, int]]:
        """(tid, attempt) of every live attempt of `job` that `worker` holds, read from the
        tasks themselves (`live:<attempt>` fields)."""
        with translated_errors("reading leases"):
            members = [_attempt_member(m) for m in self.r.zrange(keys.leases(job), 0, -1)]
            pipe = self.r.pipeline(transaction=False)
            for tid, attempt in members:
                pipe.hget(keys.task(job, tid), f"live:{attempt}")
            holders = pipe.execute()
        return [m for m, holder in zip(members, holders, strict=True) if holder and holder.decode() == worker]

    def add_backup(self, job: str, tid: str) -> bool:
        """Queue a second attempt of a task at the front, iff exactly one attempt of it runs."""
        with translated_errors(f"queueing a backup of {tid}"):
            return bool(self._backup(keys=[keys.task(job, tid), keys.queue(job), keys.wake()], args=[tid]))

    def add_event(self, job: str, kind: str, tid: str, attempt: int, worker: str, message: str) -> None:
        """Tell the master (and its views) something a worker saw, e.g. a cancelled attempt."""
        with translated_errors("reporting an event"):
            self.r.xadd(keys.events(job), {"kind": kind, "tid": tid, "attempt": attempt,
                                           "worker": worker, "msg": message}, maxlen=1000, approximate=True)

    def events(self, job: str, after: str = "0-0") -> list[tuple[str, dict[str, str]]]:
        """Events appended after stream id `after`, oldest first."""
        with translated_errors("reading events"):
            found = self.r.xrange(keys.events(job), min=f"({after}", count=200)
        return [(eid.decode(), _decode(fields)) for eid, fields in found]

    def take_attempt_log(self, job: str, batch: int = 5000) -> list[list[Any]]:
        """Take every entry of the job's attempt log (keys.attempt_log), oldest first."""
        taken: list[list[Any]] = []
        with translated_errors("reading the attempt log"):
            while found := self.r.lpop(keys.attempt_log(job), batch):
                taken += json.loads(b"[" + b",".join(found) + b"]")  # one parse per batch, not per entry
                if len(found) < batch:
                    break
        return taken

    def add_output(self, job: str, worker: str, tid: str, attempt: int, lines: list[str]) -> None:
        """Ship what a task's code printed (one pipeline, whatever the number of lines)."""
        with translated_errors("shipping the job's output lines"):
            pipe = self.r.pipeline(transaction=False)
            for line in lines:
                pipe.xadd(keys.output(job), {"worker": worker, "tid": tid, "attempt": attempt,
                                             "line": line}, maxlen=10_000, approximate=True)
            pipe.execute()

    def output_lines(self, job: str, after: str = "0-0") -> list[tuple[str, dict[str, str]]]:
        """Printed lines shipped after stream id `after`, oldest first."""
        with translated_errors("reading the job's output lines"):
            found = self.r.xrange(keys.output(job), min=f"({after}", count=500)
        return [(eid.decode(), _decode(fields)) for eid, fields in found]

    def map_output(self, job: str, index: int) -> bytes | None:
        """A map-only job's output of map task `index` (None when it emitted nothing)."""
        with translated_errors(f"reading the output of map {index}"):
            return self.r.hget(keys.part(job, 0), index)

    def worker_rows(self) -> tuple[dict[str, dict[str, Any]], dict[str, int], int]:
        """(worker -> info, worker -> last beat ms, server now ms) in one round trip."""
        with translated_errors("reading workers"):
            pipe = self.r.pipeline(transaction=False)
            pipe.hgetall(keys.workers())
            pipe.hgetall(keys.beats())
            info, beats = pipe.execute()
            now = self.now_ms()
        return (
            {k.decode(): json.loads(v) for k, v in info.items()},
            {k.decode(): int(v) for k, v in beats.items()},
            now,
        )

    def current_job(self) -> str | None:
        with translated_errors("reading the current job"):
            job = self.r.get(keys.current_job())
        return job.decode() if job else None

    # -- waking up instead of polling (design invariant 10) ---------------------------------

    def wait_for_task(self, timeout: float) -> bool:
        """Block until a task may be there to claim (a wake token), or `timeout` seconds."""
        with translated_errors("waiting for a task"):  # BLPOP's 0 would mean forever
            return self.r.blpop([keys.wake()], timeout=max(timeout, 0.01)) is not None

    def wait_for_progress(self, job: str, timeout: float) -> bool:
        """Block until an attempt of `job` commits or fails, or `timeout` seconds; then drop
        the other tokens: the master's next tick sees every change so far."""
        with translated_errors("waiting for progress"):
            pipe = self.r.pipeline(transaction=False)
            pipe.blpop([keys.progress(job)], timeout=max(timeout, 0.01))
            pipe.delete(keys.progress(job))
            return pipe.execute()[0] is not None

    def wake_workers(self) -> None:
        """Wake every idle worker: the job changed state (ended, failed)."""
        with translated_errors("waking the workers"):
            pipe = self.r.pipeline(transaction=False)
            self._wake_all(pipe)
            pipe.execute()

    @staticmethod
    def _wake_all(pipe: Any) -> None:
        pipe.rpush(keys.wake(), *["1"] * keys.WAKE_MAX)
        pipe.ltrim(keys.wake(), 0, keys.WAKE_MAX - 1)

