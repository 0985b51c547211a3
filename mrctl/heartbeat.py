"""A worker's heartbeat, kept by a separate process so that user code cannot starve it.

A thread would need the GIL, and one C call in user code (`sum(range(7 * 10**8))`) can hold
the GIL for longer than a lease: the worker would be declared dead while it works. The keeper
process has its own interpreter and its own Redis connection. It:

- publishes the worker's heartbeat and renews its task's lease every lease/3 seconds, and at
  once when the worker reports a new state (a task started or ended);
- enforces task_timeout: it interrupts the user code (a message, then SIGUSR1: the worker
  raises TaskTimeout), and if the code does not give way within a grace period it kills the
  worker, so that its supervisor starts a fresh one;
- stops an attempt that lost its race to another attempt (TaskCancelled, the same way);
- ends the worker when the local backend's master is gone, and ends itself when the worker is.

`task_timeout` alone bounds a running attempt: the lease only detects a worker that is gone.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

TIMEOUT_GRACE_S = 5.0


@dataclass
class BeatState:
    """What the worker tells its keeper whenever it changes (as JSON over their pipe)."""

    job: str | None = None
    tid: str | None = None
    attempt: int = 0
    tasks_done: int = 0
    user_code: bool = False  # the job's code runs: only then may it be interrupted
    lease_s: float = 10.0
    task_timeout: float = 300.0

    def info(self) -> dict[str, Any]:
        busy = self.tid is not None
        state = ("mapping" if self.tid.startswith("m:") else "reducing") if busy else "idle"
        return {"state": state, "task": self.tid, "attempt": self.attempt if busy else None,
                "tasks_done": self.tasks_done, "job": self.job}


@dataclass
class KeeperOptions:
    redis_url: str
    name: str
    worker_pid: int
    signal_worker: bool = True  # False for workers running in a thread (tests)
    master_pid: int | None = None  # local backend: end the worker when this process is gone


class HeartbeatKeeper:
    """The keeper's state machine: one `tick(now)` per beat, so it runs in tests in-process."""

    def __init__(self, options: KeeperOptions, broker: Any, conn: Connection | None = None) -> None:
        self.options = options
        self.broker = broker
        self.conn = conn
        self.state = BeatState()
        self.started = 0.0
        self.interrupted_at: float | None = None

    def update(self, state: BeatState, now: float) -> None:
        if (state.job, state.tid, state.attempt) != (self.state.job, self.state.tid, self.state.attempt):
            self.started, self.interrupted_at = now, None
        self.state = state

    def tick(self, now: float) -> str | None:
        """Beat once; returns the action taken: "cancel", "timeout", "kill" or None."""
        s = self.state
        reply = self.broker.heartbeat(self.options.name, {**s.info(), "pid": self.options.worker_pid},
                                      s.job, s.tid, s.attempt, s.lease_s)
        if s.tid is None or not s.user_code:
            return None
        if self.interrupted_at is None:
            if reply == "cancelled":
                return self._interrupt("cancel", now)
            if now - self.started > s.task_timeout:
                log.error("task %s attempt %d exceeded task_timeout (%gs): interrupting it",
                          s.tid, s.attempt, s.task_timeout)
                return self._interrupt("timeout", now)
        elif now - self.interrupted_at > TIMEOUT_GRACE_S and self.options.signal_worker:
            log.error("task %s ignored its interruption: killing the worker so that a fresh one "
                      "replaces it", s.tid)
            os.kill(self.options.worker_pid, signal.SIGKILL)
            return "kill"
        return None

    def _interrupt(self, reason: str, now: float) -> str:
        self.interrupted_at = now
        if self.conn is not None:
            self.conn.send_bytes(json.dumps([reason, self.state.tid, self.state.attempt]).encode())
        if self.options.signal_worker:
            os.kill(self.options.worker_pid, signal.SIGUSR1)
        return reason


def _keeper_main(options: KeeperOptions, conn: Connection) -> None:
    """The keeper process: beat until the worker closes its end of the pipe (or dies)."""
    from mrctl.broker import Broker
    from mrctl.errors import InfraError

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when the keeper stops
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {options.name} heartbeat "
                        "%(levelname)s %(message)s", datefmt="%H:%M:%S")
    broker = Broker(options.redis_url)
    keeper = HeartbeatKeeper(options, broker, conn)
    next_beat = 0.0
    try:
        while True:
            now = time.monotonic()
            if conn.poll(max(0.0, next_beat - now)):
                try:
                    message = json.loads(conn.recv_bytes())
                except (EOFError, OSError):
                    return  # the worker is gone
                if message is None:
                    return
                keeper.update(BeatState(**message), time.monotonic())
            if options.master_pid and not _alive(options.master_pid):
                log.error("the master (pid %d) is gone: ending the worker", options.master_pid)
                os.kill(options.worker_pid, signal.SIGTERM)
                return
            try:
                if keeper.tick(time.monotonic()) == "kill":
                    return
            except InfraError as exc:
                log.warning("heartbeat failed: %s", exc)
            next_beat = time.monotonic() + max(0.1, min(1.0, keeper.state.lease_s / 3))
    finally:
        broker.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class HeartbeatProcess:
    """Owns the keeper process of one worker; a context manager that always stops it."""

    options: KeeperOptions
    process: Any = None
    conn: Connection | None = None
    state: BeatState = field(default_factory=BeatState)

    def __enter__(self) -> HeartbeatProcess:
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded worker
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_keeper_main, args=(self.options, child),
                                   name=f"{self.options.name}-heartbeat", daemon=True)
        self.process.start()
        child.close()
        return self

    def report(self, **changes: Any) -> None:
        """Tell the keeper about a new state (it beats at once when the task changed)."""
        for key, value in changes.items():
            setattr(self.state, key, value)
        if self.conn is not None:
            self.conn.send_bytes(json.dumps(vars(self.state)).encode())

    def interruption(self) -> tuple[str, str | None, int] | None:
        """The keeper's latest interruption (reason, task, attempt), if one is pending."""
        found = None
        while self.conn is not None and self.conn.poll():
            reason, tid, attempt = json.loads(self.conn.recv_bytes())
            found = (reason, tid, attempt)
        return found

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            try:
                self.conn.send_bytes(b"null")
            except OSError:
                pass
            self.conn.close()
        if self.process is not None:
            self.process.join(timeout=3)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
