"""A worker's heartbeat, kept by a separate process so that user code cannot starve it.

A thread would need the GIL, and one C call in user code (`sum(range(7 * 10**8))`) can hold
the GIL for longer than a lease: the worker would be declared dead while it works. The keeper
is a child process with its own Redis connection: forked from the worker's process after its
imports (ForkedKeeper), or, for a worker running in a thread of a bigger process (tests), a new
`python -P -m mrctl.worker.heartbeat` (so nothing of that process's main module is re-run). It:

- publishes the worker's heartbeat and renews the leases of the tasks it holds (the one it
  runs, and the rest of its batch of tiny tasks: unstarted, or run and waiting for the batch's
  commit) every lease/3 seconds; it never ends an attempt the worker holds (the worker bounds
  a batch's wall time itself and releases its unstarted tasks: mrctl.worker.batching);
- enforces task_timeout (over a batch of tiny tasks, reported as one, from the batch's start):
  it interrupts the user code (a message, then SIGUSR1: the worker
  raises TaskTimeout), and if the code does not give way within a grace period it kills the
  worker, so that its supervisor starts a fresh one;
- stops an attempt that lost its race to another attempt (TaskCancelled, the same way);
- ends the worker when the local backend's master is gone (SIGTERM, then SIGKILL), and ends
  itself when the worker is gone (its pipe closes, or its parent changes).

Worker and keeper talk JSON over a socket pair; the keeper's settings, Redis password
included, are its first message (never on a command line). `task_timeout` alone bounds a
running attempt: the lease only detects a worker that is gone.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from mrctl.io.task_ids import is_map

log = logging.getLogger(__name__)

TIMEOUT_GRACE_S = 5.0
READY_TIMEOUT_S = 30.0
REDIS_TIMEOUT_S = 5.0  # a keeper stuck on Redis would stop enforcing timeouts


@dataclass
class BeatState:
    """What the worker tells its keeper whenever it changes."""

    job: str | None = None
    tid: str | None = None
    attempt: int = 0
    tasks_done: int = 0
    user_code: bool = False  # the job's code runs: only then may it be interrupted
    lease_s: float = 10.0
    task_timeout: float = 300.0
    held: list[str] = field(default_factory=list)  # "<tid>@<attempt>": the rest of its batch
    pid: int | None = None  # the process that runs the tasks (a run's child), if not the worker

    def info(self) -> dict[str, Any]:
        busy = self.tid is not None
        state = ("mapping" if is_map(self.tid) else "reducing") if busy else "idle"
        return {"state": state, "task": self.tid, "attempt": self.attempt if busy else None,
                "tasks_done": self.tasks_done, "job": self.job}


@dataclass
class KeeperOptions:
    redis_url: str
    name: str
    worker_pid: int
    signal_worker: bool = True  # False for workers running in a thread (tests): report only
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
                                      s.job, s.tid, s.attempt, s.lease_s, s.held)
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
            _signal(s.pid or self.options.worker_pid, signal.SIGKILL)
            return "kill"
        return None

    def _interrupt(self, reason: str, now: float) -> str:
        self.interrupted_at = now
        s = self.state
        if self.conn is not None:
            self.conn.send_bytes(json.dumps([reason, s.job, s.tid, s.attempt]).encode())
        if self.options.signal_worker:
            _signal(s.pid or self.options.worker_pid, signal.SIGUSR1)
        return reason


def _signal(pid: int, signum: int) -> None:
    """Signal the process that runs the tasks; one that has just ended needs nothing."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


# -- the keeper process -------------------------------------------------------------------------

def main(fd: int) -> None:
    """`python -m mrctl.worker.heartbeat FD`: beat until the worker is gone."""
    from mrctl.broker import Broker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when its keeper stops
    conn = Connection(fd)
    options = KeeperOptions(**json.loads(conn.recv_bytes()))
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {options.name} heartbeat "
                        "%(levelname)s %(message)s", datefmt="%H:%M:%S", force=True)
    broker = Broker(options.redis_url, retries=1, socket_timeout=REDIS_TIMEOUT_S)
    try:
        _beat_until_gone(HeartbeatKeeper(options, broker, conn), conn)
    finally:
        broker.close()


def _beat_until_gone(keeper: HeartbeatKeeper, conn: Connection) -> None:
    from mrctl.errors import InfraError

    options, next_beat, ready = keeper.options, 0.0, False
    while True:
        # Take every state the worker reports until the next beat is due: beats keep their
        # pace however many tiny tasks go by (a claim sets the new attempt's lease itself).
        while conn.poll(max(0.0, next_beat - time.monotonic())):
            try:
                message = json.loads(conn.recv_bytes())
            except (EOFError, OSError):
                return  # the worker is gone
            if message is None:
                return
            keeper.update(BeatState(**message), time.monotonic())
        if os.getppid() != options.worker_pid:
            return  # the worker died (and something else holds its end of the pipe)
        if options.master_pid and _master_gone(options):
            log.error("the master (pid %d) is gone: ending the worker", options.master_pid)
            if options.signal_worker:
                _end_worker(options)
            return
        try:
            if keeper.tick(time.monotonic()) == "kill":
                return
            if not ready:
                conn.send_bytes(b'"ready"')
                ready = True
        except InfraError as exc:
            log.warning("heartbeat failed: %s", exc)
        next_beat = time.monotonic() + max(0.1, min(1.0, keeper.state.lease_s / 3))


def _master_gone(options: KeeperOptions) -> bool:
    """The worker's parent is no longer the master (reparented), or the master is gone."""
    try:
        with open(f"/proc/{options.worker_pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1]) != options.master_pid
    except (OSError, ValueError, IndexError):
        try:
            os.kill(options.master_pid, 0)  # type: ignore[arg-type]
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def _end_worker(options: KeeperOptions) -> None:
    """SIGTERM, and SIGKILL if user code holding the GIL keeps the handler from running."""
    os.kill(options.worker_pid, signal.SIGTERM)
    deadline = time.monotonic() + TIMEOUT_GRACE_S
    while time.monotonic() < deadline:
        if os.getppid() != options.worker_pid:
            return
        time.sleep(0.1)
    os.kill(options.worker_pid, signal.SIGKILL)


# -- the worker's side ----------------------------------------------------------------------------

class ForkedKeeper:
    """The keeper forked from the worker's process, after its imports: a new interpreter would
    import Redis's client and mrctl again (about 0.15 CPU-s, once per worker and per
    replacement). What the worker uses of a Popen: pid, returncode, poll, wait, kill."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    @classmethod
    def start(cls, fd: int, worker_end: socket.socket) -> ForkedKeeper:
        for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
            stream.flush()
        gc.freeze()  # the imports' objects: the keeper's collections need not touch (copy) their pages
        pid = os.fork()
        if pid:
            return cls(pid)
        code = 1
        try:  # the keeper: never returns into the worker's code
            worker_end.close()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            for signum in (signal.SIGTERM, signal.SIGUSR1):  # the worker's handlers are not its own
                signal.signal(signum, signal.SIG_DFL)
            main(fd)
            code = 0
        except BaseException:
            log.exception("the heartbeat process failed")
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere without telling us: gone, as Popen says
                self.returncode = 0
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            while self.returncode is None:
                try:
                    self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
                except ChildProcessError:
                    self.returncode = 0
            return self.returncode
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"heartbeat process {self.pid}", timeout)
            time.sleep(0.01)
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        if self.poll() is None:  # not reaped: the pid is still our child's
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


class KeeperLost(Exception):
    """The heartbeat process is gone: the worker must stop, since its leases no longer renew."""


@dataclass
class HeartbeatProcess:
    """Owns the keeper process of one worker; a context manager that always stops it."""

    options: KeeperOptions
    process: subprocess.Popen | ForkedKeeper | None = None
    conn: Connection | None = None
    state: BeatState = field(default_factory=BeatState)
    owner: int = 0  # the pid that started the keeper: only it can poll it (a run's child cannot)

    def __enter__(self) -> HeartbeatProcess:
        self.owner = os.getpid()
        mine, theirs = socket.socketpair()
        try:
            if threading.active_count() == 1:  # a worker process: fork, nothing to import again
                self.process = ForkedKeeper.start(theirs.fileno(), mine)
            else:  # a worker in a thread (tests): a fork would copy locks other threads hold
                self.process = subprocess.Popen(  # -P: no cwd on sys.path
                    [sys.executable, "-P", "-m", "mrctl.worker.heartbeat", str(theirs.fileno())],
                    pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.conn = Connection(mine.detach())
        self.conn.send_bytes(json.dumps(asdict(self.options)).encode())
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until the keeper has beaten once (only then may the worker claim tasks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._read(min(0.5, max(0.0, deadline - time.monotonic()))) == "ready":
                return
            self.check()
        raise KeeperLost(f"the heartbeat process sent no beat within {timeout_s:g}s")

    def check(self) -> None:
        """Raise KeeperLost if the keeper has exited. In a run's child, a no-op: the keeper is
        the main process's child, and the main process kills the run's child if it dies."""
        if self.process is not None and os.getpid() == self.owner and self.process.poll() is not None:
            raise KeeperLost(f"the heartbeat process exited (code {self.process.returncode})")

    def report(self, **changes: Any) -> None:
        """Tell the keeper about a new state (shown with its next beat). Cheap: a few per
        task, so tiny tasks can go by thousands a second."""
        for key, value in changes.items():
            setattr(self.state, key, value)
        try:
            self.conn.send_bytes(json.dumps(vars(self.state)).encode())  # type: ignore[union-attr]
        except OSError:
            raise KeeperLost("the heartbeat process is gone") from None

    def interruption(self) -> tuple[str, str | None, str | None, int] | None:
        """The keeper's latest interruption (reason, job, task, attempt), if one is pending."""
        found = None
        while (message := self._read(0)) is not None:
            if isinstance(message, list):
                found = tuple(message)
        return found  # type: ignore[return-value]

    def _read(self, timeout: float) -> Any:
        try:
            if self.conn is not None and self.conn.poll(timeout):
                return json.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            return None
        return None

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            try:
                self.conn.send_bytes(b"null")
            except OSError:
                pass
            self.conn.close()
        if self.process is not None:
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]))
