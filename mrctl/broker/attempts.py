"""The workers' side of the task protocol: claims, heartbeats, commits and failures,
each one Lua script (mrctl.broker.lua) so that every state change is atomic and fenced."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from mrctl.broker import keys
from mrctl.broker.base import (
    MAX_LOST_ATTEMPTS,
    BrokerBase,
    Claim,
    ClaimRequest,
    MapCommit,
    _claimed,
    _decode,
    _with_user_counters,
    translated_errors,
)
from mrctl.broker.meta import JobMeta
from mrctl.errors import InfraError
from mrctl.io.task_ids import reduce_tid, tid_index, tid_kind


class Attempts(BrokerBase):
    """Claims, heartbeats, commits, failures."""

    # -- worker side ----------------------------------------------------------------------

    def load_job(self, job: str) -> tuple[JobMeta | None, dict[str, str]]:
        """(meta, code) of a published job; meta None when the job's keys are gone."""
        with translated_errors("loading the job"):
            pipe = self.r.pipeline(transaction=False)
            pipe.hgetall(keys.meta(job))
            pipe.hgetall(keys.code(job))
            meta, code = pipe.execute()
        return (JobMeta.from_redis(_decode(meta)) if meta else None), {k.decode(): v.decode() for k, v in code.items()}

    def claim_task(self, job: str, worker: str, lease_s: float, timeout_s: float) -> Claim | None:
        """Atomically take the next queued task into a visible in-flight record with a lease."""
        claims = self.claim_tasks(job, ClaimRequest(worker, lease_s, timeout_s))
        return claims[0] if claims else None

    def claim_tasks(self, job: str, request: ClaimRequest) -> list[Claim]:
        """claim_task for up to request.max_tasks small map tasks at once (see lua.CLAIM): each
        its own attempt, lease and deadline, atomically; none when nothing is queued."""
        with translated_errors("claiming a task"):
            return _claimed(self._claim(**self._claim_call(job, request)))

    def _claim_call(self, job: str, request: ClaimRequest) -> dict[str, list]:
        """CLAIM's keys and args; a retry after a lost reply repeats the request id: same answer."""
        return {"keys": [keys.queue(job), keys.leases(job), keys.deadlines(job), keys.meta(job),
                         keys.claimed(job, request.worker), keys.attempt_log(job)],
                "args": [keys.task_prefix(job), request.worker, int(request.lease_s * 1000),
                         int(request.timeout_s * 1000), keys.chunk_prefix(job), keys.part_prefix(job),
                         keys.REPLY_TTL_MS, max(1, request.max_tasks), request.max_bytes, secrets.token_hex(8)]}

    def heartbeat(
        self, worker: str, info: dict[str, Any], job: str | None = None,
        tid: str | None = None, attempt: int = 0, lease_s: float = 0.0, held: Sequence[str] = (),
    ) -> str:
        """Record the worker as alive and renew the lease of its task and of the attempts it
        holds besides (`held`: "<tid>@<attempt>", the rest of a batch). Returns the state of
        the attempt of `tid`:
        "live"; "cancelled" once another attempt of the task committed first (stop it); or
        "ended" once it was reaped (a zombie: its commit will be refused)."""
        task_key = keys.task(job, tid) if job and tid else keys.workers()
        done = keys.done(job, tid_kind(tid)) if job and tid else keys.workers()
        leases = keys.leases(job) if job else keys.workers()
        with translated_errors("sending a heartbeat"):
            code = int(self._beat(
                keys=[keys.workers(), keys.beats(), leases, task_key, done],
                args=[worker, json.dumps(info), tid or "", attempt, int(lease_s * 1000), *held],
            ))
        return {1: "live", 2: "cancelled"}.get(code, "ended")

    def fed_blob(self, job: str, r: int, attempt: int, seq: int, timeout: float) -> bytes | None:
        """Item `seq` of attempt `attempt`'s feed of partition r (keys.feed; an empty blob: the
        end), acknowledging those before it; wakes the master first (it feeds as the worker
        takes). Waits up to `timeout` seconds for it to come: None when it did not. Sent again
        after a lost reply, a take returns the same item (lua.FEED_TAKE)."""
        feed = keys.feed(job, r, attempt)
        with translated_errors(f"reading the feed of partition {r}"):
            pipe = self.r.pipeline(transaction=False)
            pipe.rpush(keys.progress(job), "1")
            pipe.ltrim(keys.progress(job), 0, keys.WAKE_MAX - 1)
            self._feed_take(keys=[feed], args=[seq], client=pipe)
            got = pipe.execute()[-1]
            if got is None:  # the feed is empty now: block until the master appends (a move in place)
                self.r.blmove(feed, feed, max(timeout, 0.01), "LEFT", "LEFT")  # type: ignore[arg-type]
                got = self._feed_take(keys=[feed], args=[seq])
        if got is None:
            return None
        found, _, blob = got.partition(b"\n")
        if int(found) != seq:  # FEED_PUSH appends without gaps: another seq means a broken feed
            raise InfraError(f"the feed of partition {r} gave item {int(found)} where item {seq} was next")
        return blob

    def attempt_live(self, job: str, tid: str, attempt: int) -> bool:
        """Whether attempt `attempt` of `tid` is still live (not reaped, failed or beaten)."""
        with translated_errors(f"reading {tid}"):
            return bool(self.r.hexists(keys.task(job, tid), f"live:{attempt}"))

    def commit_map(
        self, job: str, tid: str, attempt: int, worker: str,
        blobs: dict[int, bytes], counters: dict[str, int],
        user_counters: Mapping[tuple[str, str], int] | None = None,
        bad_samples: Sequence[tuple[str, int, str]] = (),
    ) -> bool:
        """Atomically publish a map attempt's partition blobs, its counters (the job's own
        counters too) and its first skipped records, iff it is the current attempt."""
        done = MapCommit(tid, attempt, blobs, counters, user_counters, bad_samples)
        return self.commit_maps_then_claim(job, worker, [done])[0][0]

    def commit_maps_then_claim(
        self, job: str, worker: str, commits: Sequence[MapCommit], then_claim: ClaimRequest | None = None,
        release: Sequence[tuple[str, int]] = (), why: str = "",
    ) -> tuple[list[bool], list[Claim]]:
        """commit_map for each of `commits` (each its own atomic, fenced step), with
        `then_claim` the worker's next claim (claim_tasks), then the release of the attempts
        in `release` (release_attempts; after the claim, so that other workers take them), all
        in one round trip: (committed or refused, per commit; the next claims). Tiny tasks
        then cost a round trip per batch."""
        calls = []
        for c in commits:
            index = str(tid_index(c.tid))  # the map index, the field of its blob in each partition
            writes = [(keys.part(job, r), index, blob) for r, blob in c.blobs.items()]
            if c.bad_samples:
                writes.append((keys.bad_records(job), c.tid, json.dumps(c.bad_samples).encode()))
            calls.append(self._commit_call(job, c.tid, c.attempt, worker, keys.chunk(job, c.tid),
                                           _with_user_counters(c.counters, c.user_counters), writes,
                                           c.request))
        if then_claim is not None:
            claim = self._claim_call(job, then_claim)
            calls.append((self._claim, claim["keys"], claim["args"]))
        calls += [self._release_call(job, tid, attempt, why) for tid, attempt in release]
        if not calls:
            return [], []
        what = f"committing {commits[0].tid}" if commits else "claiming a task" if then_claim else "releasing tasks"
        with translated_errors(what):
            done = self._scripts(calls)
        claimed = _claimed(done[len(commits)]) if then_claim is not None else []
        return [bool(ok) for ok in done[:len(commits)]], claimed

    def release_attempts(self, job: str, attempts: Sequence[tuple[str, int]], why: str) -> None:
        """Give back claimed attempts that never started, in one round trip: each ends as
        'released' (if still live), its task requeued at the front; nothing is counted."""
        self.commit_maps_then_claim(job, "", [], None, attempts, why)

    def _release_call(self, job: str, tid: str, attempt: int, why: str) -> tuple[Any, list, list]:
        return self._fail, self._fail_keys(job), [keys.task_prefix(job), 0, 0, tid, attempt, "released", why, ""]

    def commit_reduce(
        self, job: str, r: int, attempt: int, worker: str, blob: bytes, counters: dict[str, int],
        user_counters: Mapping[tuple[str, str], int] | None = None,
    ) -> bool:
        """Atomically publish a reduce attempt's output and counters, and drop its consumed
        input, iff it is the current attempt."""
        writes = [(keys.out(job, r), "", blob)]
        return self._commit_attempt(job, reduce_tid(r), attempt, worker, keys.part(job, r),
                                    _with_user_counters(counters, user_counters), writes)

    def bad_records(self, job: str) -> dict[str, list[tuple[str, int, str]]]:
        """The first skipped records of each committed map task: tid -> [(file, line, error)]."""
        with translated_errors("reading the skipped records"):
            found = self.r.hgetall(keys.bad_records(job))
        return {tid.decode(): [tuple(s) for s in json.loads(v)] for tid, v in found.items()}

    def _commit_attempt(
        self, job: str, tid: str, attempt: int, worker: str, consumed: str,
        counters: dict[str, int], writes: list[tuple[str, str, bytes]],
    ) -> bool:
        with translated_errors(f"committing {tid}"):
            return bool(self._scripts([self._commit_call(job, tid, attempt, worker, consumed, counters, writes,
                                                         secrets.token_hex(8))])[0])

    def _commit_call(
        self, job: str, tid: str, attempt: int, worker: str, consumed: str,
        counters: dict[str, int], writes: list[tuple[str, str, bytes]], request: str,
    ) -> tuple[Any, list, list]:
        """COMMIT's call; a retry after a lost reply repeats the request id: same answer."""
        args: list[Any] = [tid, attempt, worker, keys.REPLY_TTL_MS, len(counters)]
        for name, value in counters.items():
            args += [name, int(value)]  # any size (lua._COUNT); a bool as 0 or 1
        for write in writes:
            args += list(write)
        return (self._commit,
                [keys.task(job, tid), keys.leases(job), keys.deadlines(job), keys.stats(job), keys.events(job),
                 consumed, keys.reply(job, request), keys.progress(job), keys.attempt_log(job),
                 keys.done(job, tid_kind(tid)), keys.late(keys.run_of(job)), keys.reply(keys.run_of(job), request)],
                args)

    def fail_attempt(
        self, job: str, tid: str, attempt: int, max_attempts: int,
        message: str, traceback: str, kind: str = "error", max_lost: int = MAX_LOST_ATTEMPTS,
    ) -> int:
        """Record an ended attempt: kind error | timeout | oom counts toward max_attempts, lost
        toward max_lost. Returns 1 retried, 2 the task failed for good, 0 not a live attempt."""
        with translated_errors(f"reporting the failure of {tid}"):
            return int(self._fail(
                keys=self._fail_keys(job),
                args=[keys.task_prefix(job), max_attempts, max_lost, tid, attempt, kind, message,
                      traceback],
            ))

    def _fail_keys(self, job: str) -> list[str]:
        return [keys.leases(job), keys.deadlines(job), keys.stats(job), keys.events(job),
                keys.queue(job), keys.meta(job), keys.wake(), keys.progress(job), keys.attempt_log(job)]

