"""The broker's foundation: the connection, Redis errors translated into mrctl's, the Lua
scripts registered once, and the plain data that crosses it (Claim, ClaimRequest, MapCommit)."""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.exceptions
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from mrctl.broker import keys, lua
from mrctl.errors import InfraError
from mrctl.io.task_ids import parse_attempt_ref

# Attempts of one task that may be lost (their worker died or went silent) before the job
# fails: generous, since a lost attempt is not the code's fault, yet finite, since code that
# kills its worker every time looks the same.
MAX_LOST_ATTEMPTS = 16


# What can still fill Redis: a finished task keeps 4 bytes and at most a few thousand tasks wait
# at once (mrctl.master.loop.TASKS_AHEAD), so tiny chunks are never the cause and never the cure.
FULL_ADVICE = ("Committed intermediate data already moves to the master's disk past 30% of it, and "
               "finished tasks keep almost nothing, so this is what the job needs in Redis at once: one "
               "reduce task's partition (more reducers make each smaller), or the map tasks in flight "
               "with their chunks and outputs (a smaller chunk_size helps when chunks are large). "
               "Or give Redis more --redis-memory.")


class RedisFull(InfraError):
    """Redis hit its maxmemory limit; nothing was evicted, the job cannot go on."""


class RedisLost(InfraError):
    """The connection to Redis broke or went silent, and retrying did not bring it back."""


# A peer that vanished without a word (a swarm node killed or cut off sends no RST) is an
# error within ~10 s instead of a read that waits forever: keepalive probes an idle connection
# after 3 s, every 2 s, 3 times; TCP_USER_TIMEOUT ends a connection whose sent data (a command,
# or a probe) stays unacknowledged for 10 s. A busy Redis still acknowledges at the TCP level,
# so a long command is never cut. Linux names; the options a platform lacks are left out.
SILENT_PEER_OPTIONS = {getattr(socket, name): value for name, value in (
    ("TCP_KEEPIDLE", 3), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3), ("TCP_USER_TIMEOUT", 10_000))
    if hasattr(socket, name)}


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
        raise RedisLost(f"lost the connection to Redis while {what}: {exc}") from None


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
    """(tid, attempt) of a lease or deadline member "<tid>@<attempt>" (see mrctl.broker.lua)."""
    return parse_attempt_ref(member.decode())


@dataclass(frozen=True)
class ClaimRequest:
    """Who claims, the lease and timeout each attempt gets, and how many queued map tasks one
    claim may take at once (a batch of tiny tasks: at most `max_tasks`, chunks of at most
    `max_bytes` in all; each task its own attempt)."""

    worker: str
    lease_s: float
    timeout_s: float
    max_tasks: int = 1
    max_bytes: int = 0


@dataclass(frozen=True)
class MapCommit:
    """What one map attempt publishes: its partition blobs, counters, skipped records."""

    tid: str
    attempt: int
    blobs: dict[int, bytes]
    counters: dict[str, int]
    user_counters: Mapping[tuple[str, str], int] | None = None
    bad_samples: Sequence[tuple[str, int, str]] = ()  # (file, line in it, error): where they are
    # the commit's request id, the same however often it is sent: a commit that Redis applied
    # but whose reply was lost, sent again, answers what it answered the first time
    request: str = field(default_factory=lambda: secrets.token_hex(8))


def _claimed(got: list | None) -> list[Claim]:
    """The Claims of CLAIM's reply (a list of {tid, attempt, task fields, input}), maybe none."""
    return [_claim_of(*one) for one in got or ()]


def _claim_of(tid: bytes, attempt: int, flat_fields: list[bytes], data: Any) -> Claim:
    if isinstance(data, list):  # a reduce's partition: map index -> blob
        data = {int(k): v for k, v in _hash_of(data).items()}
    return Claim(tid.decode(), int(attempt), _decode(_hash_of(flat_fields)), data)


class BrokerBase:
    """The connection to one cluster's Redis and its registered scripts."""


    def __init__(self, url: str, retries: int = 5, socket_timeout: float | None = None) -> None:
        """`url` is redis://:password@host:port/db, or unix://:password@/path/to.sock?db=0
        (the local backend's Redis listens on a unix socket only)."""
        self.url = url
        retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries)
        # Keepalive is a TCP option: redis-py refuses it on a unix socket connection.
        tcp = {} if url.startswith("unix:") else {"socket_keepalive": True,
                                                  "socket_keepalive_options": SILENT_PEER_OPTIONS}
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
        self._add_map_tasks = self.r.register_script(lua.ADD_MAP_TASKS)
        self._known: set[str] = set()  # scripts this broker has loaded (_scripts)
        self._add_step_task = self.r.register_script(lua.ADD_STEP_TASK)
        self._now = self.r.register_script(lua.NOW)
        self._take_string = self.r.register_script(lua.TAKE_STRING)
        self._take_hash = self.r.register_script(lua.TAKE_HASH)
        self._take_fields = self.r.register_script(lua.TAKE_FIELDS)
        self._field_sizes = self.r.register_script(lua.FIELD_SIZES)
        self._feed_push = self.r.register_script(lua.FEED_PUSH)
        self._feed_take = self.r.register_script(lua.FEED_TAKE)

    def _scripts(self, calls: list[tuple[Any, list, list]]) -> list[Any]:
        """Several Lua script calls in one round trip: EVALSHA in a pipeline (without the
        SCRIPT EXISTS round trip redis-py's pipelines make first). Scripts this Redis does not
        know yet are loaded and the batch sent again; each script is idempotent (request ids,
        tasks queued once), so what ran the first time is not done twice."""
        for script in {id(c[0]): c[0] for c in calls if c[0].sha not in self._known}.values():
            self.r.script_load(script.script)  # once per script: a first call of megabytes is not sent twice
            self._known.add(script.sha)
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

