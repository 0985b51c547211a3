"""The worker loop: claim a task, run the job's code on it, commit under its fencing token.

A heartbeat thread renews the task's lease while user code runs and enforces task_timeout:
it first interrupts the task (TaskTimeout raised in the main thread), and if the user code does
not give way within a grace period the process exits so that its supervisor restarts it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

from mrctl import tasks
from mrctl.broker import Broker, Claim
from mrctl.errors import InfraError
from mrctl.loader import JobClasses, job_classes, load_module

log = logging.getLogger(__name__)

TIMEOUT_GRACE_S = 5.0
EXIT_STUCK = 70  # the task ignored its timeout: exit so the supervisor starts a fresh worker


class TaskTimeout(Exception):
    """Raised inside user code when its task has run longer than task_timeout."""


class TaskCancelled(Exception):
    """Raised inside user code when another attempt of its task (a speculative backup, or the
    original it backed up) committed first."""


@dataclass
class _Current:
    job: str | None = None
    tid: str | None = None
    attempt: int = 0
    started: float = 0.0
    interrupted_at: float | None = None
    user_code: bool = False  # the job's code is running: only then may it be interrupted
    cancelled: bool = False  # interrupted because another attempt of the task committed first


@dataclass
class WorkerOptions:
    lease_s: float = 10.0
    poll_s: float = 0.05
    burst: bool = False  # return when the current job has ended (tests, inline use)
    max_tasks: int | None = None
    redis_patience_s: float = 30.0  # exit when Redis is unreachable for this long
    interrupt_main: bool = True  # deliver TaskTimeout via a signal (main thread only)
    parent_pid: int | None = None  # local backend: exit when this master process is gone


@dataclass
class Worker:
    broker: Broker
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    options: WorkerOptions = field(default_factory=WorkerOptions)

    def __post_init__(self) -> None:
        self.tasks_done = 0
        self.current = _Current()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._loaded: tuple[str, JobClasses, dict[str, str]] | None = None

    # -- driver ---------------------------------------------------------------------------

    def run(self) -> int:
        """Work until stopped (or, in burst mode, until the current job ends)."""
        if self.options.interrupt_main and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._on_timeout_signal)
        try:
            self._send_beat()  # announce readiness at once, not one beat interval later
        except InfraError as exc:
            log.warning("first heartbeat failed: %s", exc)
        beat = threading.Thread(target=self._beat_loop, name="heartbeat", daemon=True)
        beat.start()
        log.info("worker %s ready", self.name)
        down_since: float | None = None
        try:
            while not self._stop.is_set():
                try:
                    worked = self.tick()
                    down_since = None
                except InfraError as exc:
                    down_since = down_since or time.monotonic()
                    if time.monotonic() - down_since > self.options.redis_patience_s:
                        log.error("giving up: %s", exc)
                        return 3
                    log.warning("%s; retrying", exc)
                    worked = False
                    time.sleep(1.0)
                if worked is None:  # burst mode and the job is over
                    return 0
                if self.options.max_tasks and self.tasks_done >= self.options.max_tasks:
                    return 0
                if not worked:
                    self._stop.wait(self.options.poll_s)
        finally:
            self._stop.set()
        return 0

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> bool | None:
        """One step: claim and run one task. True if a task ran, None if a burst worker is done."""
        job = self.broker.current_job()
        if job is None:
            return False
        meta = self._meta(job)
        if meta.get("state") != "running":
            return None if self.options.burst else False
        claim = self.broker.claim_task(
            job, self.name, self._lease_s(meta), float(meta.get("task_timeout", 300))
        )
        if claim is None:
            return False
        self._run_claim(job, meta, claim)
        return True

    # -- one task -------------------------------------------------------------------------

    def _lease_s(self, meta: dict[str, str]) -> float:
        """The job's lease (published by the master), else this worker's default."""
        return float(meta.get("lease_s") or self.options.lease_s)

    def _meta(self, job: str) -> dict[str, str]:
        if self._loaded and self._loaded[0] == job:
            state = self.broker.meta(job).get("state", "")
            return {**self._loaded[2], "state": state}
        return self.broker.meta(job)

    def _classes(self, job: str) -> JobClasses:
        if self._loaded is None or self._loaded[0] != job:
            meta, code = self.broker.load_job(job)
            module = load_module(meta["module"], code[meta["module"]])
            classes = job_classes(module, meta["mapper"], meta["reducer"], meta.get("combiner") or None)
            self._loaded = (job, classes, meta)
        return self._loaded[1]

    def _run_claim(self, job: str, meta: dict[str, str], claim: Claim) -> None:
        with self._lock:
            self.current = _Current(job, claim.tid, claim.attempt, time.monotonic())
        self._send_beat()
        where = _describe_input(claim.fields)
        log.info("task %s attempt %d start%s", claim.tid, claim.attempt, where)
        started = time.perf_counter()
        try:
            committed, records = self._execute(job, meta, claim)
        except TaskCancelled:
            log.info("task %s attempt %d cancelled: another attempt committed first", claim.tid, claim.attempt)
            self.broker.add_event(job, "cancelled", claim.tid, claim.attempt, self.name,
                                  "cancelled: another attempt committed first")
        except Exception as exc:
            self._report_failure(job, meta, claim, exc)
        else:
            took = time.perf_counter() - started
            if committed:
                self.tasks_done += 1
                log.info("task %s attempt %d done: %d records in, %.2fs",
                         claim.tid, claim.attempt, records, took)
            else:
                log.warning("task %s attempt %d: commit refused (superseded by a newer attempt)",
                            claim.tid, claim.attempt)
        finally:
            with self._lock:
                self.current = _Current(job)
            self._send_beat()

    def _execute(self, job: str, meta: dict[str, str], claim: Claim) -> tuple[bool, int]:
        classes = self._classes(job)
        reducers = int(meta["reducers"])
        if claim.tid.startswith("m:"):
            if claim.data is None:
                raise InfraError(f"the input chunk of {claim.tid} is missing from Redis")
            combiner = classes.combiner() if classes.combiner else None
            started = time.perf_counter()
            with self._user_code():
                result = tasks.run_map(classes.mapper(), combiner, claim.data, reducers,
                                       meta.get("encoding_errors", "replace"))
            counters = {"maps_done": 1, "records_in": result.records_in,
                        "map_records_out": result.records_out, "bytes_done": len(claim.data),
                        "decode_errors": result.decode_errors,
                        "map_ms": int((time.perf_counter() - started) * 1000)}
            ok = self.broker.commit_map(job, claim.tid, claim.attempt, self.name, result.blobs, counters)
            return ok, result.records_in
        blobs = [claim.data[i] for i in sorted(claim.data)]
        with self._user_code():
            result = tasks.run_reduce(classes.reducer(), tasks.merge_blobs(blobs))
        counters = {"reduces_done": 1, "records_out": len(result.pairs)}
        ok = self.broker.commit_reduce(job, int(claim.tid[2:]), claim.attempt, self.name,
                                       tasks.pack_pairs(result.pairs), counters)
        return ok, result.records_in

    @contextlib.contextmanager
    def _user_code(self) -> Iterator[None]:
        """Mark the span in which an interruption (timeout, cancellation) may be raised."""
        self.current.user_code = True
        try:
            yield
        finally:
            self.current.user_code = False

    def _report_failure(self, job: str, meta: dict[str, str], claim: Claim, exc: Exception) -> None:
        tb = "".join(traceback.format_exception(exc))
        kind = "timeout" if isinstance(exc, TaskTimeout) else "error"
        message = f"{type(exc).__name__}: {exc}{_describe_line(claim.fields, exc)}"
        log.error("task %s attempt %d failed: %s\n%s", claim.tid, claim.attempt, message, tb)
        self.broker.fail_attempt(job, claim.tid, claim.attempt,
                                 int(meta.get("max_attempts", 4)), message, tb, kind)

    # -- heartbeat ------------------------------------------------------------------------

    def _beat_loop(self) -> None:
        while not self._stop.wait(self._beat_interval()):
            if self.options.parent_pid and os.getppid() != self.options.parent_pid:
                log.error("the master (pid %d) is gone: exiting", self.options.parent_pid)
                os._exit(0)
            try:
                if self._send_beat() == "cancelled":
                    self._cancel_current()
                self._enforce_timeout()
            except InfraError as exc:
                log.warning("heartbeat failed: %s", exc)

    def _on_timeout_signal(self, signum: int, frame: object) -> None:
        cur = self.current  # no lock: the main thread may hold it when the signal arrives
        if cur.tid is not None and cur.interrupted_at is not None and cur.user_code:
            if cur.cancelled:
                raise TaskCancelled(f"another attempt of {cur.tid} committed first")
            raise TaskTimeout(f"task {cur.tid} exceeded task_timeout and was interrupted")

    def _cancel_current(self) -> None:
        """Another attempt of the current task committed first: stop spending time on it.
        (A reaped attempt is not cancelled: it runs on, and its late commit is refused.)"""
        with self._lock:
            cur = self.current
        if cur.tid is None or not cur.user_code or cur.interrupted_at is not None:
            return
        log.info("task %s attempt %d: another attempt committed first; cancelling it", cur.tid, cur.attempt)
        cur.cancelled = True
        cur.interrupted_at = time.monotonic()
        if self.options.interrupt_main:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    def _beat_interval(self) -> float:
        lease = self._lease_s(self._loaded[2]) if self._loaded else self.options.lease_s
        return max(0.1, min(1.0, lease / 3))

    def _send_beat(self) -> str:
        with self._lock:
            cur = self.current
        lease = self._lease_s(self._loaded[2]) if self._loaded else self.options.lease_s
        busy = cur.tid is not None
        state = ("mapping" if cur.tid.startswith("m:") else "reducing") if busy else "idle"
        info = {"state": state, "task": cur.tid, "attempt": cur.attempt if busy else None,
                "tasks_done": self.tasks_done, "job": cur.job, "pid": os.getpid()}
        return self.broker.heartbeat(self.name, info, cur.job, cur.tid, cur.attempt, lease)

    def _enforce_timeout(self) -> None:
        with self._lock:
            cur = self.current
        if cur.tid is None or cur.job is None or self._loaded is None:
            return
        timeout = float(self._loaded[2].get("task_timeout", 300))
        now = time.monotonic()
        if cur.interrupted_at is None and now - cur.started > timeout:
            log.error("task %s attempt %d exceeded task_timeout (%gs): interrupting it",
                      cur.tid, cur.attempt, timeout)
            cur.interrupted_at = now
            if self.options.interrupt_main:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
        elif cur.interrupted_at is not None and cur.user_code and now - cur.interrupted_at > TIMEOUT_GRACE_S:
            if self.options.interrupt_main:
                log.error("task %s ignored its interruption; exiting so a fresh worker replaces this one",
                          cur.tid)
                os._exit(EXIT_STUCK)


def _describe_input(fields: dict[str, str]) -> str:
    if "file" not in fields:
        return ""
    return f" ({fields['file']} bytes {fields['start']}-{fields['end']})"


def _describe_line(fields: dict[str, str], exc: BaseException) -> str:
    line = getattr(exc, "mrctl_line", None)
    if line is None or "first_line" not in fields:
        return ""
    return f" (at {fields['file']}, line {int(fields['first_line']) + line})"
