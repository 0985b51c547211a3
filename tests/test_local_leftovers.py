"""A local-backend master that dies without tearing down leaves nothing running, and `mrctl
down --all` removes what it left on disk (issue 11, item 12).

Real processes throughout: a real `python -m mrctl run --backend local` master killed with
SIGKILL, a real redis-server and workers, and `mrctl down` run as a user runs it. `down` runs
with XDG_STATE_HOME pointing into the test's tmp_path (so it sees only this test's records)
and DOCKER_HOST pointing nowhere (so it never touches the Docker clusters of anyone sharing
this engine, and its "Docker not reachable" path is exercised).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from conftest import ROOT, corpus_files, sequential_wordcount
from jobs import SLOW, WORDCOUNT, make_spec
from procs import children_of, read_until

from mrctl.backends import local_registry
from mrctl.backends.fleet import _choose
from mrctl.backends.local import LocalCluster
from mrctl.backends.local_registry import LocalRecord, Process
from mrctl.dockerapi.host import LABEL_CLUSTER, LABEL_JOB, ContainerInfo
from mrctl.errors import SpecError
from mrctl.host import lifeline
from mrctl.master.driver import run_job

NO_DOCKER = "unix:///nonexistent/docker.sock"


@pytest.fixture
def state_home(tmp_path, monkeypatch) -> Path:
    """A private XDG_STATE_HOME for this test, here and in the processes it starts."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def mrctl(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "DOCKER_HOST": NO_DOCKER}
    return subprocess.Popen([sys.executable, "-m", "mrctl", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def mrctl_down_all() -> subprocess.CompletedProcess:
    proc = mrctl("down", "--all")
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


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


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat; None when the process is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def alive(procs: dict[int, tuple[int, str]]) -> list[str]:
    """The processes of `procs` still running: same pid *and* same start time."""
    return [cmd for pid, (started, cmd) in procs.items() if start_time(pid) == started]


def temp_dir_of(procs: dict[int, tuple[int, str]]) -> Path:
    """The cluster's temp dir: where a worker's MRCTL_REDIS_URL points (unix socket)."""
    for pid, (_, cmd) in procs.items():
        if "-m mrctl.worker" in cmd:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            url = next(v.split(b"=", 1)[1].decode() for v in env if v.startswith(b"MRCTL_REDIS_URL="))
            return Path(unquote(urlparse(url).path)).parent
    raise AssertionError(f"no worker among {procs}")


def dead_process() -> Process:
    """The identity of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    gone = Process.of(proc.pid, "master")  # a zombie until reaped: /proc still answers
    proc.wait()
    assert start_time(proc.pid) != gone.started
    return gone


@pytest.mark.slow
def test_sigkilled_master_takes_redis_and_workers_with_it_and_down_cleans_its_temp_dir(
        tmp_path, state_home):
    master = mrctl("run", slow_local_spec(tmp_path), "--plain")
    read_until(master, "phase: map", timeout=60)
    children = children_of(master.pid)
    roles = sorted("redis" if "redis-server" in cmd else "worker" for _, cmd in children.values())
    assert roles == ["redis", "worker", "worker"], children
    # each worker's heartbeat keeper and its run's process are forks of it (no interpreter
    # started again, no second import of mrctl and Redis's client): the worker's command line
    forks = {pid: forked for worker, (_, cmd) in children.items() if "-m mrctl.worker" in cmd
             for pid, forked in children_of(worker).items()}
    assert len(forks) == 4 and {cmd for _, cmd in forks.values()} <= {cmd for _, cmd in children.values()}, forks
    temp_dir = temp_dir_of(children)
    try:
        master.kill()  # SIGKILL: no teardown code runs in the master
        master.communicate(timeout=10)
        deadline = time.monotonic() + 5
        while alive({**children, **forks}) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(children), "children outlived the SIGKILLed master"
        assert not alive(forks), "a worker's keeper or run's process outlived it"
        # What no signal can undo: the temp dir and the record. `mrctl down` removes them.
        records = list((state_home / "mrctl" / "local").glob("*.json"))
        assert len(records) == 1 and temp_dir.is_dir()
        down = mrctl_down_all()
        assert down.returncode == 0, down.stderr
        assert "Docker engine was not reachable" in down.stderr
        assert not records[0].exists(), "the record outlived mrctl down"
        assert not temp_dir.exists()
        assert f"deleted {temp_dir}" in down.stderr
    finally:  # on failure, leave nothing of ours behind
        for pid, (started, _) in {**children, **forks}.items():
            if start_time(pid) == started:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_down_all_kills_the_children_of_a_dead_master_and_deletes_its_temp_dir(state_home):
    with LocalCluster(2, job_name="orphaned", job_id="20260101-000000-abcd") as cluster:
        record_path = state_home / "mrctl" / "local" / f"{cluster.id}.json"
        assert stat.S_IMODE(record_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(record_path.parent.stat().st_mode) == 0o700
        record = LocalRecord.from_json(record_path.read_text())
        assert record.master.pid == os.getpid() and record.temp_dir == str(cluster.dir)
        procs = {cluster.redis.pid: cluster.redis, **{p.pid: p for p in cluster.workers.values()}}
        assert {c.pid for c in record.children} == set(procs)
        # PDEATHSIG cannot help when the master's death is only on paper: say it died.
        local_registry.save(dataclasses.replace(record, master=dead_process()))

        down = mrctl_down_all()

        assert down.returncode == 0, down.stderr
        assert f"cluster {cluster.id} (job orphaned)" in down.stderr
        assert "killed 3 leftover processes (redis, worker-1, worker-2)" in down.stderr
        for proc in procs.values():
            assert proc.wait(timeout=5) == -signal.SIGKILL
        assert not cluster.dir.exists() and not record_path.exists()
    # the owner's own teardown copes with children and a temp dir that are already gone


def test_down_never_kills_a_recycled_pid_nor_touches_a_live_masters_cluster(tmp_path, state_home):
    stranger = subprocess.Popen(["sleep", "60"])  # holds a pid a record names, but is not it
    other_dir = tmp_path / "mrctl-local-live-x"
    other_dir.mkdir()
    not_ours = tmp_path / "not-a-cluster-dir"
    not_ours.mkdir()
    try:
        boot = local_registry.boot_id()
        impostor = Process(stranger.pid, start_time(stranger.pid) - 1, "redis")
        local_registry.save(LocalRecord("dead1", "j", "", str(not_ours), boot, dead_process(), (impostor,)))
        live_master = Process.of(os.getpid(), "master")
        local_registry.save(LocalRecord("live1", "j", "", str(other_dir), boot, live_master, ()))

        down = mrctl_down_all()

        assert down.returncode == 0, down.stderr
        assert stranger.poll() is None, "down killed a process that only shared a recorded pid"
        assert "cluster dead1 (job j): no leftover process" in down.stderr
        assert not_ours.is_dir(), "down deleted a directory that is not a local cluster's"
        assert other_dir.is_dir() and (state_home / "mrctl" / "local" / "live1.json").exists()
        assert not (state_home / "mrctl" / "local" / "dead1.json").exists()
    finally:
        stranger.kill()
        stranger.wait()
        local_registry.remove("live1")


def test_down_with_nothing_to_clean_and_no_docker_says_so(state_home):
    down = mrctl_down_all()
    assert down.returncode == 0, down.stderr
    assert "nothing to remove" in down.stderr and "Docker engine was not reachable" in down.stderr


def test_a_run_records_its_cluster_while_it_runs_and_forgets_it_at_teardown(tmp_path, state_home):
    records = state_home / "mrctl" / "local"
    seen: list[LocalRecord] = []

    def look(snap):
        if snap.workers and not seen:
            seen.extend(LocalRecord.from_json(p.read_text()) for p in records.glob("*.json"))

    spec = make_spec(tmp_path, WORDCOUNT, corpus_files()[:1], workers=2)
    run_job(spec, on_snapshot=look)
    assert len(seen) == 1
    record = seen[0]
    assert record.master == Process.of(os.getpid(), "master") and record.job == "test"
    assert sorted(c.role for c in record.children) == ["redis", "worker-1", "worker-2"]
    assert Path(record.temp_dir).name.startswith("mrctl-local-")
    assert list(records.glob("*")) == [], "the record outlived a normal teardown"


def test_lifeline_never_starts_a_command_whose_parent_is_already_gone(tmp_path):
    marker = tmp_path / "ran"
    gone = dead_process()
    command = lifeline.guarded(["touch", str(marker)], gone.pid)
    assert subprocess.run(command, timeout=10).returncode == lifeline.EXIT_ORPHANED
    assert not marker.exists()
    assert subprocess.run(lifeline.guarded(["touch", str(marker)], os.getpid()), timeout=10).returncode == 0
    assert marker.exists()


@pytest.mark.slow
def test_down_picks_a_local_leftover_by_job_and_asks_when_several(tmp_path, state_home):
    boot = local_registry.boot_id()
    dirs = {}
    for cluster, job in (("aaaa1111", "first"), ("bbbb2222", "second")):
        dirs[cluster] = tmp_path / f"mrctl-local-{cluster}-x"
        dirs[cluster].mkdir()
        local_registry.save(LocalRecord(cluster, job, f"id-{job}", str(dirs[cluster]), boot,
                                        dead_process(), ()))

    def down(*args: str) -> subprocess.CompletedProcess:
        proc = mrctl("down", *args)
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    several = down()
    assert several.returncode == 2
    assert "aaaa1111 (first, local)" in several.stderr and "bbbb2222 (second, local)" in several.stderr
    assert dirs["aaaa1111"].is_dir() and dirs["bbbb2222"].is_dir()

    one = down("--job", "second")
    assert one.returncode == 0, one.stderr
    assert "removed local cluster bbbb2222 (job second)" in one.stderr
    assert not dirs["bbbb2222"].exists() and dirs["aaaa1111"].is_dir()

    unknown = down("--job", "third")  # might be a Docker cluster, and Docker cannot be asked
    assert unknown.returncode == 3 and "cannot reach the Docker engine" in unknown.stderr

    assert down("--job", "id-first").returncode == 0 and not dirs["aaaa1111"].exists()
    assert list((state_home / "mrctl" / "local").glob("*.json")) == []


def test_a_state_dir_that_cannot_be_written_does_not_fail_the_run(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    spec = make_spec(tmp_path, WORDCOUNT, corpus_files()[:1], workers=1)
    final = run_job(spec)
    assert final.status == "succeeded"
    assert spec.output_path.read_text(encoding="utf-8") == sequential_wordcount(corpus_files()[:1])
    assert "mrctl down` will not find its leftovers" in caplog.text


def test_down_chooses_across_docker_clusters_and_local_leftovers():
    def container(cid: str, job: str) -> ContainerInfo:
        return ContainerInfo(f"x{cid}", f"mrctl-{cid}-redis", "running",
                             {LABEL_CLUSTER: cid, LABEL_JOB: job}, None, False, {})

    docker = {"d1": [container("d1", "wordcount")], "d2": [container("d2", "grep")]}
    local = [LocalRecord("l1", "wordcount", "20260101-000000-abcd", "/tmp/none", "b",
                         Process(1, 1, "master"))]
    assert _choose(docker, local, None, everything=True) == (["d1", "d2"], local)
    assert _choose(docker, local, "d2", everything=False) == (["d2"], [])
    assert _choose(docker, local, "20260101-000000-abcd", everything=False) == ([], local)
    assert _choose({}, local, None, everything=False) == ([], local)
    assert _choose({}, [], None, everything=False) == ([], [])
    with pytest.raises(SpecError, match=r"several clusters: d1 \(wordcount\), l1 \(wordcount, local\)"):
        _choose(docker, local, "wordcount", everything=False)
    with pytest.raises(SpecError, match="no mrctl cluster matches --job nope"):
        _choose(docker, local, "nope", everything=False)
