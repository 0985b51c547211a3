"""A worker process's start: `python -m mrctl.worker` (what containers and the local backend
run) and `mrctl worker` (the same, with flags) both come here.

`python -m mrctl.worker` takes its settings from the environment only, and imports neither
the CLI nor typer: the worker's start is paid once per worker and per replacement, hundreds
of times in a test run, so it imports what a worker needs and nothing else.

Environment: MRCTL_REDIS_URL_FILE (a file holding the Redis URL, what containers get) or
MRCTL_REDIS_URL, MRCTL_WORKER_NAME, MRCTL_PARENT_PID (the local backend's master: end with it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from mrctl.errors import MrctlError, SpecError, exit_status


def run_worker(redis_url: str | None = None, redis_url_file: Path | None = None, name: str | None = None,
               burst: bool = False, parent_pid: int | None = None) -> int:
    """Claim and run tasks until stopped; the worker's exit code. Raises SpecError when no
    Redis URL is given or its file cannot be read."""
    from mrctl.broker import Broker
    from mrctl.worker.loop import Worker, WorkerOptions

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True, datefmt="%H:%M:%S",
                        format=f"%(asctime)s {name or ''} %(levelname)s %(message)s")
    # SIGTERM ends the worker at once: its lease expires and the task runs elsewhere.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if redis_url_file is not None:
        try:
            redis_url = redis_url_file.read_text().strip()
        except OSError as exc:
            raise SpecError(f"the Redis URL file {redis_url_file} (--redis-url-file, MRCTL_REDIS_URL_FILE): "
                            f"{exc.strerror}") from None
    if not redis_url:
        raise SpecError("mrctl worker needs the Redis URL: --redis-url-file or --redis-url "
                        "(MRCTL_REDIS_URL_FILE, MRCTL_REDIS_URL)")
    # Each run in a fresh process forked from this one (mrctl.worker.runs): a warm cluster's
    # next job must not see the last one's environment, globals or threads.
    options = WorkerOptions(burst=burst, parent_pid=parent_pid, process_per_run=True)
    broker = Broker(redis_url)
    worker = Worker(broker, name=name, options=options) if name else Worker(broker, options=options)
    return worker.run()


def main() -> None:
    """`python -m mrctl.worker`: a worker configured by the environment (see the docstring)."""
    env = os.environ
    url_file = env.get("MRCTL_REDIS_URL_FILE")
    parent = env.get("MRCTL_PARENT_PID") or None  # empty: unset, as for `mrctl worker`
    try:
        if parent is not None and not (parent.isascii() and parent.isdigit()):
            raise SpecError(f"MRCTL_PARENT_PID={parent!r}: not a process id")
        code = run_worker(env.get("MRCTL_REDIS_URL"), Path(url_file) if url_file else None,
                          env.get("MRCTL_WORKER_NAME") or None, parent_pid=int(parent) if parent else None)
    except (MrctlError, KeyboardInterrupt) as exc:
        code, line = exit_status(exc)
        print(line, file=sys.stderr)
    sys.exit(code)
