"""Secrets of a docker cluster (issue 11, item 10), with real containers where they are about
containers: the Redis password shows in no `docker inspect`, command line or environment, only
in the user's 0600 state file; teardown leaves no volume or state file.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, corpus_files, sequential_wordcount
from jobs import SLOW, make_spec

from mrctl import credentials
from mrctl.backends.redis_config import redis_conf
from mrctl.errors import SpecError
from mrctl.runner import run_job


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory, monkeypatch):
    """A private state directory, inherited by the `mrctl` processes the tests start."""
    home = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


# -- no Docker ----------------------------------------------------------------------------------

def test_state_file_is_0600_in_a_0700_directory_and_forgotten(state_home):
    saved = os.umask(0o022)  # a usual umask would make the directory 0755
    try:
        path = credentials.save("c0ffee00", "job-1", "0123abcd")
    finally:
        os.umask(saved)
    assert path == state_home / "mrctl" / "clusters" / "c0ffee00.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert credentials.redis_password("c0ffee00") == "0123abcd"
    assert [p.name for p in path.parent.iterdir()] == ["c0ffee00.json"]  # no temp file left
    credentials.forget("c0ffee00")
    credentials.forget("c0ffee00")  # gone already is fine
    assert credentials.redis_password("c0ffee00") is None


def test_relative_xdg_state_home_is_ignored(monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")
    assert credentials.state_dir() == Path.home() / ".local" / "state" / "mrctl"


def test_redis_conf_has_the_password_once_and_refuses_injected_lines():
    conf = redis_conf("deadbeef", "256mb", workdir="/tmp")
    assert conf.count("deadbeef") == 1 and "maxmemory 256mb" in conf
    assert "maxmemory-policy noeviction" in conf
    with pytest.raises(SpecError, match="--redis-memory"):
        redis_conf("deadbeef", "1gb\nuser default on nopass", workdir="/tmp")


def test_worker_needs_a_readable_url_file_or_a_url(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mrctl.cli import app

    monkeypatch.delenv("MRCTL_REDIS_URL", raising=False)
    monkeypatch.delenv("MRCTL_REDIS_URL_FILE", raising=False)
    missing = CliRunner().invoke(app, ["worker", "--redis-url-file", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "nope" in missing.output
    neither = CliRunner().invoke(app, ["worker"])
    assert neither.exit_code == 2 and "MRCTL_REDIS_URL_FILE" in neither.output


# -- real containers ----------------------------------------------------------------------------

def _cluster_of(host, job_id: str) -> str | None:
    found = host.containers({"mrctl.job-id": job_id})
    return found[0].labels["mrctl.cluster"] if found else None


def _processes() -> dict[str, bytes]:
    """pid -> its command line and environment, for every process this user can read."""
    seen = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                seen[entry.name] = (entry / "cmdline").read_bytes() + b"\n" + (entry / "environ").read_bytes()
            except OSError:
                continue
    return seen


def _mrctl_status() -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "mrctl", "status", "--json"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
def test_password_shows_nowhere_but_the_state_file(tmp_path, docker_host, state_home):
    """While a job runs: no `docker inspect` of its containers, networks or volumes, no command
    line or environment on the host, no `ps` line holds the password; the state file is 0600
    and `mrctl status --json` from another process reads the cluster with it."""
    books = corpus_files()[:2]
    spec = make_spec(tmp_path, SLOW, books, mapper="SlowMapper", backend="docker", workers=2,
                     chunk_size=64 << 10, reducers=2)
    seen: dict = {}

    def check(snap):
        cid = _cluster_of(docker_host, snap.job_id)
        if seen or cid is None or snap.phase != "map":
            return
        seen["cluster"] = cid
        password = credentials.redis_password(cid)
        assert password and len(password) == 32
        path = credentials.cluster_file(cid)
        assert path.parent == state_home / "mrctl" / "clusters"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        api = docker_host.client.api
        inspected = [api.inspect_container(c.id) for c in docker_host.containers({"mrctl.cluster": cid})]
        inspected += [api.inspect_network(n) for n, _ in docker_host.networks({"mrctl.cluster": cid})]
        inspected += [api.inspect_volume(v) for v in docker_host.volumes({"mrctl.cluster": cid})]
        assert len(inspected) == 3 + 1 + 3  # redis + 2 workers, the network, a secrets volume each
        for attrs in inspected:
            assert password not in json.dumps(attrs), attrs.get("Name")
        redis = next(a for a in inspected if a.get("Name", "").endswith("-redis"))
        assert redis["Config"]["Cmd"] == ["redis-server", "/run/mrctl/redis.conf"]
        worker = next(a for a in inspected if a.get("Name", "").endswith("-worker-1"))
        assert "MRCTL_REDIS_URL_FILE=/run/mrctl/redis-url" in worker["Config"]["Env"]
        processes = _processes()
        assert sum(b"redis-server" in p for p in processes.values()) >= 1  # container processes
        assert sum(b"mrctl\0worker" in p for p in processes.values()) >= 2  # are visible here
        leaks = [pid for pid, p in processes.items() if password.encode() in p]
        assert not leaks, [processes[pid][:300] for pid in leaks]
        ps = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
        assert "redis-server" in ps and password not in ps
        (status,) = [s for s in _mrctl_status() if s["cluster"] == cid]
        assert status["note"] is None and status["state"] == "running", status
        assert {w["name"] for w in status["workers"]} == {"worker-1", "worker-2"}

    final = run_job(spec, on_snapshot=check)
    assert seen, "the job ended before it could be inspected"
    assert spec.output_path.read_text(encoding="utf-8") == sequential_wordcount(books)
    assert final.status == "succeeded"
    assert not credentials.cluster_file(seen["cluster"]).exists()
