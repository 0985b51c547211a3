"""Each run's tasks in a fresh process: a worker that serves run after run (a warm cluster's
workers do) runs each in a child forked from its main process, which stays clean.

The main process imports mrctl, msgpack and redis, owns the heartbeat keeper, and never runs
the job's code nor talks to Redis once its keeper beats: it forks a child and waits for it,
again and again. The child (forked after the imports: nothing to import again) waits for a
run, claims and runs that run's tasks, and exits when another run, or none, becomes current;
the next child is forked at once, while the worker is idle, so a job's start pays no fork and
no connection to Redis. So job B never sees job A's environment, builtins, working directory,
random state (random reseeds itself in a forked child), module globals or threads; only files
(/tmp) outlast a run, as they would on a cold cluster's container.

A run, not a step: the steps of one run share its child, as they share its job module
(mrctl.worker.loader) and, on a cold cluster, its workers. A run is one user's job; its steps hand
each other data anyway, and a 12-step PageRank need not pay twelve forks.

The keeper (mrctl.worker.heartbeat) stays the main process's child, so it survives the runs; it
signals the process that runs tasks (BeatState.pid, which the child reports first). If the
keeper dies while a run's child works, the main process (waiting on both) kills the child and
ends, as a worker without leases must. A child that dies of a signal (the keeper's SIGKILL of a
task that ignored its timeout, user code killing itself) ends the worker with the same signal,
so that its supervisor replaces it exactly as before; the child dies with the main process
(PR_SET_PDEATHSIG) and SIGTERM to the main process takes the child along.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, NoReturn

from mrctl.host import lifeline
from mrctl.io import shipped
from mrctl.worker.heartbeat import KeeperLost

if TYPE_CHECKING:
    from mrctl.worker.loop import Worker

log = logging.getLogger(__name__)

EXIT_INFRA = 3  # Redis gone for good or the keeper lost: the worker ends (cli's exit code)


def serve(worker: Worker) -> int:
    """The main process's loop: fork a child that serves the next run, wait for it, repeat.
    Returns the worker's exit code; never runs the job's code, nor talks to Redis."""
    child = 0

    def on_term(signum: int, frame: object) -> None:
        if child:
            os.kill(child, signal.SIGKILL)  # the child's leases expire; its tasks run elsewhere
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    worker.broker.close()  # no connection for the children to inherit: each opens its own
    gc.freeze()  # the imports' objects: a child's collections need not touch (copy) their pages
    parent = os.getpid()
    while not worker._stop.is_set():
        worker.beats.check()  # type: ignore[union-attr]
        child = os.fork()
        if child == 0:
            _child(worker, parent)
        code = _wait(worker, child)
        child = 0
        if code < 0:
            log.error("a run's process died of signal %d: ending this worker likewise", -code)
            if -code not in (signal.SIGKILL, signal.SIGSTOP):  # those two have no handler to reset
                signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        if code != 0 or worker.options.burst or worker.options.max_tasks:
            return code
    return 0


def _wait(worker: Worker, child: int) -> int:
    """Wait for the run's child; its exit code (negative: the signal that killed it). If the
    keeper dies first, kill the child (its leases no longer renew) and raise KeeperLost."""
    keeper = worker.beats.process  # type: ignore[union-attr]
    while True:
        pid, status = os.waitpid(-1, 0)  # the keeper and the child are this process's only children
        if pid == child:
            return os.waitstatus_to_exitcode(status)
        if keeper is not None and pid == keeper.pid:
            keeper.returncode = os.waitstatus_to_exitcode(status)
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            raise KeeperLost(f"the heartbeat process exited (code {keeper.returncode})")


def _child(worker: Worker, parent: int) -> NoReturn:
    """A run's process: wait for a run, serve it (all its steps), exit when another run, or
    none, is current. Forked ahead, while the worker is idle, so that a job's start costs no
    fork, no connection to Redis and no import."""
    code = 1
    try:
        lifeline.die_with_parent(parent)
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        worker.serve_one_run()
        code = worker._loop()
        worker._report(pid=None, job=None, tid=None, attempt=0, held=[], user_code=False)
    except KeeperLost as exc:
        log.error("%s: ending the run's process", exc)
        code = EXIT_INFRA
    except BaseException:  # the job's code may raise SystemExit or worse: say so, and end
        log.exception("a run's process failed")
    finally:
        shipped.remove_made()  # the run's copies of its job's files (os._exit runs no atexit)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
