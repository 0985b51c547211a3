"""A local-backend master that dies without tearing down leaves nothing running (issue 11,
item 12).

Real processes throughout: a real `python -m mrctl run --backend local` master killed with
SIGKILL, and the real redis-server and workers it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from conftest import ROOT, corpus_files
from jobs import SLOW

from mrctl.backends import lifeline

NO_DOCKER = "unix:///nonexistent/docker.sock"


def mrctl(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "DOCKER_HOST": NO_DOCKER}
    return subprocess.Popen([sys.executable, "-m", "mrctl", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def slow_local_spec(tmp_path: Path) -> str:
    (tmp_path / "job.py").write_text(SLOW)
    spec = tmp_path / "slow.yaml"
    spec.write_text(
        "name: slow\n"
        f"input: {corpus_files()[0]}\n"
        "job: {module: job.py, mapper: SlowMapper, reducer: SlowReducer, combiner: SumReducer}\n"
        "backend: local\nworkers: 2\nreducers: 3\nchunk_size: 64KiB\n"
        f"output: {tmp_path / 'out.json'}\n"
    )
    return str(spec)


def read_until(proc: subprocess.Popen, needle: str, timeout: float = 60) -> str:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"never saw {needle!r}; got:\n{''.join(seen)}")


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat; None when the process is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def children_of(pid: int) -> dict[int, tuple[int, str]]:
    """pid -> (start time, command line) of the live children of `pid`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = (int(fields[19]), cmd)
    return found


def alive(procs: dict[int, tuple[int, str]]) -> list[str]:
    """The processes of `procs` still running: same pid *and* same start time."""
    return [cmd for pid, (started, cmd) in procs.items() if start_time(pid) == started]


def temp_dir_of(procs: dict[int, tuple[int, str]]) -> Path:
    """The cluster's temp dir: where a worker's MRCTL_REDIS_URL points (unix socket)."""
    for pid, (_, cmd) in procs.items():
        if "-m mrctl worker" in cmd:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            url = next(v.split(b"=", 1)[1].decode() for v in env if v.startswith(b"MRCTL_REDIS_URL="))
            return Path(unquote(urlparse(url).path)).parent
    raise AssertionError(f"no worker among {procs}")


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sigkilled_master_takes_redis_and_workers_with_it(tmp_path):
    master = mrctl("run", slow_local_spec(tmp_path), "--plain")
    read_until(master, "phase: map")
    children = children_of(master.pid)
    roles = sorted("redis" if "redis-server" in cmd else "worker" for _, cmd in children.values())
    assert roles == ["redis", "worker", "worker"], children
    temp_dir = temp_dir_of(children)
    try:
        master.kill()  # SIGKILL: no teardown code runs in the master
        master.communicate(timeout=10)
        deadline = time.monotonic() + 5
        while alive(children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(children), "children outlived the SIGKILLed master"
    finally:  # on failure, leave nothing of ours behind
        for pid, (started, _) in children.items():
            if start_time(pid) == started:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)  # no signal can undo this one


def test_lifeline_never_starts_a_command_whose_parent_is_already_gone(tmp_path):
    marker = tmp_path / "ran"
    command = lifeline.guarded(["touch", str(marker)], dead_pid())
    assert subprocess.run(command, timeout=10).returncode == lifeline.EXIT_ORPHANED
    assert not marker.exists()
    assert subprocess.run(lifeline.guarded(["touch", str(marker)], os.getpid()), timeout=10).returncode == 0
    assert marker.exists()
