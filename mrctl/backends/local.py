"""`--backend local`: a redis-server child process and N worker child processes on this host.

Children run in their own sessions, so a Ctrl-C in the terminal reaches only the master,
which then tears them down in order. Workers get the job's code through Redis, exactly as
they do in containers: nothing here relies on the shared filesystem.

Redis listens on a unix socket inside the cluster's temp dir (created 0700 by mkdtemp) and on
no TCP port: a loopback port could be taken by any local process between the moment it was
chosen and the moment redis-server bound it, and that process would then receive the job's
code and decide its output. Only this user (and root) can reach the socket; readiness also
checks that the server answering is the redis-server started here.

Every child dies with the master, however the master ends (mrctl.host.lifeline), and the
cluster is recorded in the user's state directory while it runs (mrctl.backends.local_registry)
so that `mrctl down` can delete what a killed master left on disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from mrctl.backends import WorkerExit, local_registry
from mrctl.backends.local_registry import LocalRecord, Process
from mrctl.backends.redis_server import obtain_redis_server
from mrctl.broker import Broker
from mrctl.errors import InfraError
from mrctl.host import lifeline

log = logging.getLogger(__name__)


# An AF_UNIX path holds at most 107 bytes (sun_path is 108 with its terminating NUL).
MAX_SOCKET_PATH = 107


def _conf_value(value: str) -> str:
    """`value` quoted for a redis.conf line (double quotes, backslash escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class LocalCluster:
    """Owns a redis-server and worker processes; a context manager that always cleans up.

    Start and use it from one thread: its children die when the thread that started them
    ends (PR_SET_PDEATHSIG names a thread, not a process)."""

    def __init__(self, workers: int, redis_memory: str = "1gb", job_name: str = "",
                 job_id: str = "") -> None:
        self.id = secrets.token_hex(4)
        self.size = workers
        self.redis_memory = redis_memory
        self.password = secrets.token_hex(16)
        # 0700 (mkdtemp): the guard of the socket inside
        self.dir = Path(tempfile.mkdtemp(prefix=f"{local_registry.TEMP_DIR_PREFIX}{self.id}-"))
        self.redis: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.states: dict[str, str] = {}
        self._next = 1
        self._record: LocalRecord | None = None
        self.job_name, self.job_id = job_name, job_id
        self._children: list[tuple[subprocess.Popen, Process]] = []  # each child, as recorded

    @property
    def socket(self) -> Path:
        """Redis's unix socket, the cluster's only way in."""
        return self.dir / "redis.sock"

    @property
    def redis_url(self) -> str:
        return f"unix://:{self.password}@{quote(str(self.socket))}?db=0"

    def __enter__(self) -> LocalCluster:
        try:
            self._register()
            self._start_redis()
            for _ in range(self.size):
                self._start_worker()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- start ----------------------------------------------------------------------------

    def _start_redis(self) -> None:
        server = obtain_redis_server(lambda msg: log.info("%s", msg))
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise InfraError(f"the local backend's socket path {self.socket} is longer than a unix "
                             f"socket allows ({MAX_SOCKET_PATH} bytes): point TMPDIR at a shorter "
                             "directory")
        config = "\n".join([
            "port 0", f"unixsocket {_conf_value(str(self.socket))}", "unixsocketperm 700",
            f"requirepass {self.password}", 'save ""', "appendonly no",
            f"maxmemory {self.redis_memory}", "maxmemory-policy noeviction",
            f"dir {_conf_value(str(self.dir))}", "",
        ])
        # The config (with the password) goes through stdin, never the command line.
        self.redis = self._spawn("redis", [server.path, "-"], "redis.log", subprocess.PIPE,
                                 {**os.environ, **server.env})
        self.redis.stdin.write(config.encode())
        self.redis.stdin.close()
        self._wait_redis()

    def _wait_redis(self, timeout: float = 10.0) -> None:
        """Poll until our redis-server answers on the socket, and check that it is ours."""
        broker = Broker(self.redis_url, retries=0)
        deadline = time.monotonic() + timeout
        try:
            while not broker.ping():
                if self.redis.poll() is not None or time.monotonic() > deadline:
                    output = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                    raise InfraError(f"redis-server did not become ready:\n{output}")
                time.sleep(0.05)
            if (pid := broker.server_pid()) != self.redis.pid:
                raise InfraError(f"the Redis answering on {self.socket} is process {pid}, not the "
                                 f"redis-server mrctl started ({self.redis.pid}): refusing it")
        finally:
            broker.close()

    def _start_worker(self) -> str:
        name = f"worker-{self._next}"
        self._next += 1
        env = {**os.environ, "MRCTL_REDIS_URL": self.redis_url, "MRCTL_WORKER_NAME": name,
               "MRCTL_PARENT_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1",
               "TMPDIR": str(self.dir)}  # what job code puts in temp files goes with the cluster
        # -P: not the caller's directory first on sys.path (a csv.py there would replace the
        # standard library's in every worker); the job's own siblings travel with its code
        self.workers[name] = self._spawn(name, [sys.executable, "-P", "-m", "mrctl.worker"],
                                         f"{name}.log", subprocess.DEVNULL, env)
        self.states[name] = "starting"
        return name

    def _spawn(self, role: str, command: list[str], log_name: str, stdin: int,
               env: dict[str, str]) -> subprocess.Popen:
        """Start a child that dies with this process, in its own session (a Ctrl-C in the
        terminal reaches only the master), logging to the cluster's dir; record it."""
        with (self.dir / log_name).open("wb") as logfile:
            proc = subprocess.Popen(lifeline.guarded(command, os.getpid()), stdin=stdin,
                                    stdout=logfile, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        with contextlib.suppress(ProcessLookupError):  # died at once: nothing to record
            self._children.append((proc, Process.of(proc.pid, role)))
        self._save_record()
        return proc

    # -- the record `mrctl down` reads after a killed master --------------------------------

    def _register(self) -> None:
        if not local_registry.supported():
            return
        self._record = LocalRecord(self.id, self.job_name, self.job_id, str(self.dir),
                                   local_registry.boot_id(), Process.of(os.getpid(), "master"),
                                   redis_url=self.redis_url)
        self._save_record()

    def _save_record(self) -> None:
        """Rewrite the record with the children running now. A state dir that cannot be
        written costs only `mrctl down`'s help, never the run."""
        if self._record is None:
            return
        self._children = [(proc, who) for proc, who in self._children if proc.poll() is None]
        self._record = self._record.with_children([who for _, who in self._children])
        try:
            local_registry.save(self._record)
        except OSError as exc:
            log.warning("cannot record local cluster %s in %s (%s): if this process is killed, "
                        "`mrctl down` will not find its leftovers", self.id,
                        local_registry.records_dir(), exc)
            self._record = None  # warned once; the run goes on

    def wait_ready(self, broker: Broker, timeout: float = 30.0) -> None:
        """Wait until every worker has sent a heartbeat."""
        deadline = time.monotonic() + timeout
        while True:
            info, _, _ = broker.worker_rows()
            if all(n in info for n in self.live_workers()):  # the dead are the runner's to replace
                return
            if time.monotonic() > deadline:
                raise InfraError(f"workers did not report ready within {timeout:g}s")
            time.sleep(0.05)

    # -- supervision ----------------------------------------------------------------------

    def live_workers(self) -> list[str]:
        return [n for n, p in self.workers.items() if p.poll() is None]

    def supervise(self) -> list[WorkerExit]:
        """Workers that exited since the last call (the runner decides on replacements)."""
        exits = []
        for name, proc in list(self.workers.items()):
            if self.states.get(name) in ("dead", "replaced") or proc.poll() is None:
                continue
            self.states[name] = "dead"
            exits.append(WorkerExit(name, f"exited with code {proc.returncode}",
                                    log=self.worker_log(name)[-2000:]))
        return exits

    def replace(self, name: str) -> str:
        """Start a worker in place of dead `name`; returns the new one's name."""
        self.states[name] = "replaced"
        return self._start_worker()

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker process, as a crash would (chaos mode, tests)."""
        self.workers[name].send_signal(signal.SIGKILL)

    def worker_log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # -- teardown -------------------------------------------------------------------------

    def close(self) -> None:
        procs = [p for p in self.workers.values() if p.poll() is None]
        if self.redis is not None:
            procs.append(self.redis)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 3.0
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # last: a master killed in teardown stays findable
            local_registry.remove(self.id)
