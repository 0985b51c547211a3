"""`mrctl down` never removes a cluster whose master is alive (issue 24, point 3).

Real masters (`python -m mrctl run`), real processes for the local backend and real
containers for the Docker one. Every `down` here runs with XDG_STATE_HOME in the test's
tmp_path (it sees only this test's local records and credentials) and, for Docker, with
MRCTL_LABELS naming this test alone: `down` then looks only at the clusters carrying those
labels, so no one else's cluster on the shared engine is ever considered, let alone removed.
Expected outputs come from a plain Python word count (conftest.sequential_wordcount).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import LABELS, ROOT, corpus_files, sequential_wordcount
from jobs import GATED, WORDCOUNT
from procs import children_of
from procs import run_mrctl as _mrctl

NO_DOCKER = "unix:///nonexistent/docker.sock"

# Holds every map task in setup until the test creates GATE; STARTED says one has begun.
FILE_GATED = WORDCOUNT + '''
import os
import time

GATE = {gate!r}
STARTED = {started!r}


class FileGatedMapper(WordMapper):
    def setup(self):
        open(STARTED, "a").close()
        deadline = time.time() + 300
        while not os.path.exists(GATE) and time.time() < deadline:
            time.sleep(0.05)
'''


def start_time(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def alive(procs: dict[int, tuple[int, str]]) -> list[int]:
    return [pid for pid, (started, _) in procs.items() if start_time(pid) == started]


def left_line(cid: str, job: str, pid: int) -> str:
    """The line `down` prints for a cluster it leaves, written out here independently."""
    return (f"left cluster {cid} (job {job}): master pid {pid} still running "
            f"(mrctl down --force --job {cid} removes it)")


def wait_for(what: str, check, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


@pytest.fixture
def state_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


# -- the local backend ---------------------------------------------------------------------


def start_local_job(tmp_path: Path) -> tuple[subprocess.Popen, str, Path, Path]:
    """A local-backend master held mid-map: (master, cluster id, gate file, output)."""
    gate, started, out = tmp_path / "gate", tmp_path / "started", tmp_path / "out.json"
    (tmp_path / "job.py").write_text(FILE_GATED.format(gate=str(gate), started=str(started)))
    spec = tmp_path / "gated.yaml"
    spec.write_text(f"name: filegated\ninput: {corpus_files()[0]}\n"
                    "job: {module: job.py, mapper: FileGatedMapper, reducer: SumReducer}\n"
                    f"backend: local\nworkers: 2\nreducers: 2\nchunk_size: 256KiB\noutput: {out}\n")
    with open(tmp_path / "master.log", "w") as log:
        master = subprocess.Popen([sys.executable, "-m", "mrctl", "run", str(spec), "--plain"], cwd=ROOT,
                                  env={**os.environ, "DOCKER_HOST": NO_DOCKER}, stdout=log, stderr=log)
    wait_for("a map task to start", lambda: started.exists() or master.poll() is not None)
    assert master.poll() is None, (tmp_path / "master.log").read_text()
    [record] = (Path(os.environ["XDG_STATE_HOME"]) / "mrctl" / "local").glob("*.json")
    return master, json.loads(record.read_text())["cluster"], gate, out


def local_down(*args: str) -> subprocess.CompletedProcess:
    return _mrctl("down", *args, env={**os.environ, "DOCKER_HOST": NO_DOCKER}, timeout=120)


@pytest.mark.slow
def test_a_running_local_job_survives_down_all_and_down_and_finishes_exact(tmp_path, state_home):
    master, cid, gate, out = start_local_job(tmp_path)
    try:
        children = children_of(master.pid)
        assert len(children) == 3, children  # redis-server and two workers
        for args in (["--all"], []):
            down = local_down(*args)
            assert left_line(cid, "filegated", master.pid) in down.stderr.splitlines(), down.stderr
            assert "removed" not in down.stderr, down.stderr
            assert sorted(alive(children)) == sorted(children), f"down {args} killed part of a running job"
        gate.touch()
        assert master.wait(timeout=300) == 0, (tmp_path / "master.log").read_text()[-3000:]
        assert out.read_text(encoding="utf-8") == sequential_wordcount(corpus_files()[:1])
    finally:
        gate.touch()
        if master.poll() is None:
            master.kill()


@pytest.mark.slow
def test_down_force_removes_a_running_local_cluster_with_a_warning(tmp_path, state_home):
    master, cid, gate, _ = start_local_job(tmp_path)
    try:
        children = children_of(master.pid)
        down = local_down("--force")
        lines = down.stderr.splitlines()
        assert (f"warning: removing cluster {cid} (job filegated) although its master (pid {master.pid}) "
                "is still running (--force)") in lines, down.stderr
        assert any(line.startswith(f"removed local cluster {cid} (job filegated): killed 3 leftover processes")
                   for line in lines), down.stderr
        wait_for("the cluster's processes to die", lambda: not alive(children), timeout=10)
        assert master.wait(timeout=120) != 0, "the job cannot succeed without its Redis and workers"
    finally:
        gate.touch()
        if master.poll() is None:
            master.kill()


# -- the Docker backend ------------------------------------------------------------------------


@pytest.fixture
def own_labels(monkeypatch, state_home) -> str:
    """MRCTL_LABELS naming this test alone (and the session, for the leftover checks)."""
    mine = f"mrctl.test-down={uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MRCTL_LABELS", f"{LABELS},{mine}")
    return mine


def start_docker_job(tmp_path: Path, docker_host) -> tuple[subprocess.Popen, str, str]:
    """A Docker master held mid-map by GATED (its mappers wait for a key in the job's Redis,
    since containers do not share the test's files): (master, cluster id, job name)."""
    (tmp_path / "job.py").write_text(GATED)
    name = f"gated-{uuid.uuid4().hex[:6]}"
    (tmp_path / "job.yaml").write_text(
        f"name: {name}\ninput: {corpus_files()[0]}\n"
        "job: {module: job.py, mapper: GatedMapper, reducer: SumReducer}\n"
        f"workers: 2\nreducers: 2\nchunk_size: 256KiB\ntask_timeout: 600\noutput: {tmp_path / 'out.json'}\n")
    log_path = tmp_path / "master.log"
    with open(log_path, "w") as log:
        master = subprocess.Popen([sys.executable, "-m", "mrctl", "run", str(tmp_path / "job.yaml"), "--plain"],
                                  cwd=ROOT, stdout=log, stderr=log)
    cid = wait_for("the cluster to start", lambda: master.poll() is not None or
                   re.search(r"starting cluster (\w+)", log_path.read_text()), timeout=600)
    assert master.poll() is None, log_path.read_text()
    return master, cid.group(1), name


def running_containers(docker_host, cid: str) -> list[str]:
    return sorted(c.name for c in docker_host.containers({"mrctl.cluster": cid}) if c.status == "running")


def release(docker_host, cid: str) -> None:
    from mrctl.backends.docker import REDIS_PORT
    from mrctl.backends.fleet import redis_url
    from mrctl.broker import Broker

    [redis] = [c for c in docker_host.containers({"mrctl.cluster": cid, "mrctl.role": "redis"})
               if REDIS_PORT in c.host_ports]
    broker = Broker(redis_url(redis))
    broker.r.set("test:release", 1)
    broker.close()


def mid_map(cid: str) -> bool:
    status = {s["cluster"]: s for s in json.loads(_mrctl("status", "--json").stdout)}
    return cid in status and status[cid]["phase"] == "map" and any(w["task"] for w in status[cid]["workers"])


@pytest.mark.docker
def test_a_running_docker_job_survives_down_all_and_down_and_finishes_exact(
        tmp_path, docker_host, clean_docker, own_labels):
    master, cid, name = start_docker_job(tmp_path, docker_host)
    try:
        wait_for("a worker to hold a map task", lambda: master.poll() is not None or mid_map(cid))
        assert master.poll() is None, (tmp_path / "master.log").read_text()
        containers = running_containers(docker_host, cid)
        assert len(containers) == 3, containers  # redis and two workers
        for args in (["--all"], []):
            down = _mrctl("down", *args)
            assert left_line(cid, name, master.pid) in down.stderr.splitlines(), down.stderr
            assert running_containers(docker_host, cid) == containers, f"down {args} removed a running job's"
        release(docker_host, cid)
        assert master.wait(timeout=300) == 0, (tmp_path / "master.log").read_text()[-3000:]
        assert (tmp_path / "out.json").read_text(encoding="utf-8") == sequential_wordcount(corpus_files()[:1])
    finally:
        if master.poll() is None:
            master.kill()


@pytest.mark.docker
def test_down_removes_the_cluster_of_a_sigkilled_docker_master(tmp_path, docker_host, clean_docker, own_labels):
    master, cid, _ = start_docker_job(tmp_path, docker_host)
    try:
        wait_for("the workers to start", lambda: len(running_containers(docker_host, cid)) == 3)
    finally:
        master.kill()  # SIGKILL: the cluster is left behind
        master.wait(timeout=30)
    assert running_containers(docker_host, cid), "the killed master's cluster should still be there"
    down = _mrctl("down")
    assert f"removed cluster {cid}: 3 containers and its network" in down.stderr.splitlines(), down.stderr
    assert not docker_host.containers({"mrctl.cluster": cid}) and not docker_host.networks({"mrctl.cluster": cid})


@pytest.mark.docker
def test_a_cluster_whose_master_is_on_another_host_stays_until_kept_or_forced(
        docker_host, clean_docker, own_labels):
    """Its master cannot be checked from here: left (and said so) until that master leaves it
    with --keep; --force removes a live one with a warning."""
    from mrctl.backends.docker import ClusterShape, DockerCluster
    from mrctl.backends.master_id import Master

    elsewhere = DockerCluster(ClusterShape("far", 1), "20260101-000000-far1", keep=True)
    elsewhere.master = Master("another-host-of-the-test", "not-this-boot", 4242, 1234)
    here = DockerCluster(ClusterShape("near", 1), "20260101-000000-near", keep=False)
    with elsewhere:
        with here:  # its master is this very test process
            down = _mrctl("down", "--all").stderr.splitlines()
            assert (f"left cluster {elsewhere.id} (job far): master pid 4242 on host another-host-of-the-test "
                    f"cannot be checked from this host, so it counts as still running "
                    f"(mrctl down --force --job {elsewhere.id} removes it)") in down, down
            assert left_line(here.id, "near", os.getpid()) in down, down
            assert running_containers(docker_host, elsewhere.id) and running_containers(docker_host, here.id)

            forced = _mrctl("down", "--force", "--job", here.id).stderr.splitlines()
            assert (f"warning: removing cluster {here.id} (job near) although its master (pid {os.getpid()}) "
                    "is still running (--force)") in forced, forced
            assert f"removed cluster {here.id}: 2 containers and its network" in forced, forced
            assert not docker_host.containers({"mrctl.cluster": here.id})
        assert running_containers(docker_host, elsewhere.id), "--force --job removes only the one named"
    # `elsewhere` exited normally with keep: its master left it on purpose, wherever it ran
    assert running_containers(docker_host, elsewhere.id)
    down = _mrctl("down").stderr.splitlines()
    assert f"removed cluster {elsewhere.id}: 2 containers and its network" in down, down
    assert not docker_host.containers({"mrctl.cluster": elsewhere.id})
    assert not docker_host.volumes({"mrctl.cluster": elsewhere.id}), "the kept mark outlived its cluster"
