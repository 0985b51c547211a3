"""Every Redis command mrctl sends. The master and the workers both go through this module,
so the two sides of the protocol cannot drift apart.

Redis errors are translated here: a lost connection or a full Redis (maxmemory with
noeviction) becomes an `InfraError` that says what happened and what to change.
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.exceptions
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from mrctl import keys, lua
from mrctl.errors import InfraError

# Attempts of one task that may be lost (their worker died or went silent) before the job
# fails: generous, since a lost attempt is not the code's fault, yet finite, since code that
# kills its worker every time looks the same.
MAX_LOST_ATTEMPTS = 16


FULL_ADVICE = ("Committed intermediate data already moves to the master's disk past half of it, "
               "so this is what the job needs in Redis at once: one reduce task's partition, or the "
               "map tasks in flight. More reducers (smaller partitions), a smaller chunk_size, or "
               "more --redis-memory help.")


class RedisFull(InfraError):
    """Redis hit its maxmemory limit; nothing was evicted, the job cannot go on."""


@dataclass(frozen=True)
class Claim:
    """A task a worker now holds: `attempt` is its fencing token."""

    tid: str
    attempt: int
    fields: dict[str, str]
    data: Any  # map: the chunk bytes; reduce: {map_index: blob}


@contextlib.contextmanager
def translated_errors(what: str) -> Iterator[None]:
    try:
        yield
    except redis.exceptions.ResponseError as exc:
        if "OOM" in str(exc) or "maxmemory" in str(exc):
            raise RedisFull(f"Redis is full while {what}: it reached its maxmemory limit and mrctl "
                            f"never lets it drop data. {FULL_ADVICE}") from None
        raise InfraError(f"Redis refused a command while {what}: {exc}") from None
    except redis.exceptions.AuthenticationError as exc:
        raise InfraError(f"Redis rejected mrctl's password while {what}: {exc}") from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise InfraError(f"lost the connection to Redis while {what}: {exc}") from None


def _with_user_counters(counters: dict[str, int],
                        user: Mapping[tuple[str, str], int] | None) -> dict[str, int]:
    """The commit's stats increments, the job's own counters under their stats fields."""
    if not user:
        return counters
    return {**counters, **{keys.counter_field(g, n): v for (g, n), v in user.items()}}


def _flat(fields: dict[str, Any]) -> list[Any]:
    return [item for pair in fields.items() for item in pair]


def _decode(mapping: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode(errors="replace") for k, v in mapping.items()}


def _hash_of(flat: list[bytes]) -> dict[bytes, bytes]:
    """A hash as Lua's HGETALL returns it, [field, value, field, value, ...], as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _attempt_member(member: bytes) -> tuple[str, int]:
    """(tid, attempt) of a lease or deadline member "<tid>@<attempt>" (see mrctl.lua)."""
    tid, _, attempt = member.decode().rpartition("@")
    return tid, int(attempt)


@dataclass(frozen=True)
class ClaimRequest:
    """Who claims a task, and the lease and timeout its attempt gets."""

    worker: str
    lease_s: float
    timeout_s: float


def _claimed(got: list | None) -> Claim | None:
    """A Claim from CLAIM's reply ({tid, attempt, task fields, input}), or None."""
    if not got:
        return None
    tid, attempt, flat_fields, data = got[0].decode(), int(got[1]), got[2], got[3]
    fields = _decode(_hash_of(flat_fields))
    if isinstance(data, list):  # a reduce's partition: map index -> blob
        data = {int(k): v for k, v in _hash_of(data).items()}
    return Claim(tid, attempt, fields, data)


class Broker:
    """The protocol's Redis side for one cluster: job publication, claims, commits, leases."""

    def __init__(self, url: str, retries: int = 5, socket_timeout: float | None = None) -> None:
        """`url` is redis://:password@host:port/db, or unix://:password@/path/to.sock?db=0
        (the local backend's Redis listens on a unix socket only)."""
        self.url = url
        retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries)
        # Keepalive is a TCP option: redis-py refuses it on a unix socket connection.
        tcp = {} if url.startswith("unix:") else {"socket_keepalive": True}
        self.r = redis.Redis.from_url(
            url, retry=retry, socket_connect_timeout=5, socket_timeout=socket_timeout,
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError], **tcp,
        )
        self._claim = self.r.register_script(lua.CLAIM)
        self._commit = self.r.register_script(lua.COMMIT)
        self._fail = self.r.register_script(lua.FAIL)
        self._reap = self.r.register_script(lua.REAP)
        self._beat = self.r.register_script(lua.BEAT)
        self._backup = self.r.register_script(lua.BACKUP)
        self._add_task = self.r.register_script(lua.ADD_TASK)
        self._add_step_task = self.r.register_script(lua.ADD_STEP_TASK)
        self._now = self.r.register_script(lua.NOW)

    def _scripts(self, calls: list[tuple[Any, list, list]]) -> list[Any]:
        """Several Lua script calls in one round trip: EVALSHA in a pipeline (without the
        SCRIPT EXISTS round trip redis-py's pipelines make first). Scripts this Redis does not
        know yet are loaded and the batch sent again; each script is idempotent (request ids,
        tasks queued once), so what ran the first time is not done twice."""
        for retry in (False, True):
            pipe = self.r.pipeline(transaction=False)
            for script, script_keys, args in calls:
                pipe.evalsha(script.sha, len(script_keys), *script_keys, *args)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if retry:
                    raise
                for script in {id(c[0]): c[0] for c in calls}.values():
                    self.r.script_load(script.script)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.r.close()

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except (redis.exceptions.RedisError, OSError):
            return False

    def server_pid(self) -> int:
        """The process id of the redis-server answering (INFO server), to check it is ours."""
        with translated_errors("asking Redis who it is"):
            return int(self.r.info("server")["process_id"])

    def now_ms(self) -> int:
        with translated_errors("reading the clock"):
            return int(self._now())

    # -- job publication (master) ---------------------------------------------------------

    def publish_job(self, job: str, meta: dict[str, Any], code: dict[str, str]) -> None:
        """Make `job` the cluster's current job: its settings and code first, then the pointer."""
        with translated_errors("publishing the job"):
            pipe = self.r.pipeline(transaction=True)
            pipe.hset(keys.meta(job), mapping={k: str(v) for k, v in meta.items()})
            pipe.hset(keys.code(job), mapping=code)
            pipe.set(keys.current_job(), job)
            self._wake_all(pipe)  # idle workers see the new job at once
            pipe.execute()

    def add_map_task(self, job: str, tid: str, fields: dict[str, Any], chunk: bytes) -> None:
        """Atomically store a chunk and queue the map task that reads it, once (idempotent)."""
        self.add_map_tasks(job, [(tid, fields, chunk)])

    def add_map_tasks(self, job: str, batch: list[tuple[str, dict[str, Any], bytes]]) -> None:
        """add_map_task for each (tid, fields, chunk), in one round trip."""
        with translated_errors(f"queueing {batch[0][0]}" if len(batch) == 1 else "queueing map tasks"):
            self._scripts([(self._add_task, [keys.task(job, tid), keys.queue(job), keys.chunk(job, tid), keys.wake()],
                            [tid, "1", chunk, *_flat(fields)]) for tid, fields, chunk in batch])

    def add_step_tasks(self, job: str, previous: str, map_only: bool, fields: list[dict[str, Any]]) -> None:
        """Queue map tasks m:0 .. m:<n-1> of a later step (task i with fields[i]), each reading
        output i of the previous step (reduce r's, or a map-only step's map i's), moved inside
        Redis into its chunk; each once (idempotent), in one round trip."""
        with translated_errors("queueing the step's map tasks"):
            calls = []
            for i in range(len(fields)):
                tid = f"m:{i}"
                source, field = (keys.part(previous, 0), str(i)) if map_only else (keys.out(previous, i), "")
                calls.append((self._add_step_task, [keys.task(job, tid), keys.queue(job), keys.chunk(job, tid),
                                                    source, keys.wake()],
                              [tid, field, "kind", "map", "index", i, *_flat(fields[i])]))
            self._scripts(calls)

    def drop_job(self, job: str) -> int:
        """Delete every key of a finished job (a step whose output the next step has taken)."""
        with translated_errors("removing a finished step's keys"):
            found = list(self.r.scan_iter(match=f"{keys.job_prefix(job)}*", count=1000))
            for i in range(0, len(found), 1000):
                self.r.unlink(*found[i:i + 1000])
        return len(found)

    def add_reduce_tasks(self, job: str, partitions: Iterable[int]) -> None:
        """Queue reduce tasks r:<r> for the given partitions, each once (idempotent), in one
        round trip."""
        calls = [(self._add_task, [keys.task(job, f"r:{r}"), keys.queue(job), keys.task(job, f"r:{r}"), keys.wake()],
                  [f"r:{r}", "0", "", "kind", "reduce", "index", r]) for r in partitions]
        if calls:
            with translated_errors("queueing reduce tasks"):
                self._scripts(calls)

    def set_meta(self, job: str, **fields: Any) -> None:
        with translated_errors("updating the job"):
            self.r.hset(keys.meta(job), mapping={k: str(v) for k, v in fields.items()})

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

    def meta(self, job: str) -> dict[str, str]:
        with translated_errors("reading the job"):
            return _decode(self.r.hgetall(keys.meta(job)))

    def task(self, job: str, tid: str) -> dict[str, str]:
        with translated_errors(f"reading {tid}"):
            return _decode(self.r.hgetall(keys.task(job, tid)))

    def running(self, job: str) -> list[str]:
        """Ids of the tasks with at least one live attempt, in claim order."""
        with translated_errors("reading leases"):
            members = self.r.zrange(keys.deadlines(job), 0, -1)
        return list(dict.fromkeys(_attempt_member(m)[0] for m in members))

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

    def reduce_output(self, job: str, r: int) -> bytes:
        with translated_errors(f"reading the output of reduce {r}"):
            data = self.r.get(keys.out(job, r))
        if data is None:
            raise InfraError(f"reduce task r:{r} committed but its output is missing from Redis")
        return data

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

    def memory(self) -> tuple[int, int]:
        """(used_memory, maxmemory) in bytes; maxmemory 0 means no limit."""
        with translated_errors("reading memory use"):
            info = self.r.info("memory")
        return int(info["used_memory"]), int(info.get("maxmemory", 0))

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

    def used_memory(self) -> tuple[int, int]:
        """(used_memory, used_memory_peak) in bytes, from INFO memory."""
        with translated_errors("reading memory use"):
            info = self.r.info("memory")
        return int(info["used_memory"]), int(info["used_memory_peak"])

    def check_memory(self) -> None:
        """Raise RedisFull once Redis has reached maxmemory: with noeviction it now refuses the
        writes that commits need, so the job cannot finish (and must not lose data)."""
        with translated_errors("reading memory use"):
            info = self.r.info("memory")
        limit = int(info.get("maxmemory", 0))
        if limit and int(info["used_memory"]) >= limit:
            raise RedisFull(
                f"Redis is full: {int(info['used_memory']) / 1e6:.0f} MB used of its "
                f"{limit / 1e6:.0f} MB maxmemory, and mrctl never lets it drop data. {FULL_ADVICE}")

    # -- worker side ----------------------------------------------------------------------

    def load_job(self, job: str) -> tuple[dict[str, str], dict[str, str]]:
        """(meta, code) of a published job."""
        with translated_errors("loading the job"):
            pipe = self.r.pipeline(transaction=False)
            pipe.hgetall(keys.meta(job))
            pipe.hgetall(keys.code(job))
            meta, code = pipe.execute()
        return _decode(meta), {k.decode(): v.decode() for k, v in code.items()}

    def claim_task(self, job: str, worker: str, lease_s: float, timeout_s: float) -> Claim | None:
        """Atomically take the next queued task into a visible in-flight record with a lease."""
        with translated_errors("claiming a task"):
            return _claimed(self._claim(**self._claim_call(job, ClaimRequest(worker, lease_s, timeout_s))))

    def _claim_call(self, job: str, request: ClaimRequest) -> dict[str, list]:
        """CLAIM's keys and args; a retry after a lost reply repeats the request id: same answer."""
        return {"keys": [keys.queue(job), keys.leases(job), keys.deadlines(job), keys.meta(job),
                         keys.reply(job, secrets.token_hex(8))],
                "args": [keys.task_prefix(job), request.worker, int(request.lease_s * 1000),
                         int(request.timeout_s * 1000), keys.chunk_prefix(job), keys.part_prefix(job),
                         keys.REPLY_TTL_MS]}

    def heartbeat(
        self, worker: str, info: dict[str, Any], job: str | None = None,
        tid: str | None = None, attempt: int = 0, lease_s: float = 0.0,
    ) -> str:
        """Record the worker as alive and renew its task's lease. Returns the attempt's state:
        "live"; "cancelled" once another attempt of the task committed first (stop it); or
        "ended" once it was reaped (a zombie: its commit will be refused)."""
        task_key = keys.task(job, tid) if job and tid else keys.workers()
        leases = keys.leases(job) if job else keys.workers()
        with translated_errors("sending a heartbeat"):
            code = int(self._beat(
                keys=[keys.workers(), keys.beats(), leases, task_key],
                args=[worker, json.dumps(info), tid or "", attempt, int(lease_s * 1000)],
            ))
        return {1: "live", 2: "cancelled"}.get(code, "ended")

    def commit_map(
        self, job: str, tid: str, attempt: int, worker: str,
        blobs: dict[int, bytes], counters: dict[str, int],
        user_counters: Mapping[tuple[str, str], int] | None = None,
        bad_samples: Sequence[tuple[int, str]] = (),
    ) -> bool:
        """Atomically publish a map attempt's partition blobs, its counters (the job's own
        counters too) and its first skipped records, iff it is the current attempt."""
        return self.commit_map_then_claim(job, tid, attempt, worker, blobs, counters, user_counters,
                                          bad_samples)[0]

    def commit_map_then_claim(
        self, job: str, tid: str, attempt: int, worker: str,
        blobs: dict[int, bytes], counters: dict[str, int],
        user_counters: Mapping[tuple[str, str], int] | None = None,
        bad_samples: Sequence[tuple[int, str]] = (), then_claim: ClaimRequest | None = None,
    ) -> tuple[bool, Claim | None]:
        """commit_map, and with `then_claim` the worker's next claim in the same round trip (a
        step of its own, atomic like claim_task): (committed, the next claim or None). Tiny
        tasks then cost one round trip each instead of two."""
        index = tid[2:]
        writes = [(keys.part(job, r), index, blob) for r, blob in blobs.items()]
        if bad_samples:
            writes.append((keys.bad_records(job), tid, json.dumps(bad_samples).encode()))
        return self._commit_attempt(job, tid, attempt, worker, keys.chunk(job, tid),
                                    _with_user_counters(counters, user_counters), writes, then_claim)

    def commit_reduce(
        self, job: str, r: int, attempt: int, worker: str, blob: bytes, counters: dict[str, int],
        user_counters: Mapping[tuple[str, str], int] | None = None,
    ) -> bool:
        """Atomically publish a reduce attempt's output and counters, and drop its consumed
        input, iff it is the current attempt."""
        writes = [(keys.out(job, r), "", blob)]
        return self._commit_attempt(job, f"r:{r}", attempt, worker, keys.part(job, r),
                                    _with_user_counters(counters, user_counters), writes)[0]

    def bad_records(self, job: str) -> dict[str, list[tuple[int, str]]]:
        """The first skipped records of each committed map task: tid -> [(line in chunk, error)]."""
        with translated_errors("reading the skipped records"):
            found = self.r.hgetall(keys.bad_records(job))
        return {tid.decode(): [tuple(s) for s in json.loads(v)] for tid, v in found.items()}

    def _commit_attempt(
        self, job: str, tid: str, attempt: int, worker: str, consumed: str,
        counters: dict[str, int], writes: list[tuple[str, str, bytes]],
        then_claim: ClaimRequest | None = None,
    ) -> tuple[bool, Claim | None]:
        args: list[Any] = [tid, attempt, worker, keys.REPLY_TTL_MS, len(counters)]
        for name, value in counters.items():
            args += [name, value]
        for write in writes:
            args += list(write)
        with translated_errors(f"committing {tid}"):
            calls = [(self._commit,  # a retry after a lost reply repeats the request id
                      [keys.task(job, tid), keys.leases(job), keys.deadlines(job), keys.stats(job),
                       keys.events(job), consumed, keys.reply(job, secrets.token_hex(8)), keys.progress(job)],
                      args)]
            if then_claim is not None:
                claim = self._claim_call(job, then_claim)
                calls.append((self._claim, claim["keys"], claim["args"]))
            done = self._scripts(calls)
        return bool(done[0]), _claimed(done[1]) if then_claim is not None else None

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
                keys.queue(job), keys.meta(job), keys.wake(), keys.progress(job)]

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
        """Release the lock iff `holder` holds it; the workers stop serving `run`."""
        with translated_errors("releasing the cluster's lock"):
            return bool(self._release_lock(keys=[keys.cluster_lock(), keys.current_job()], args=[holder, run]))

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
