"""The docker backend with real containers: exact output, killed workers, --keep/status/logs/down,
failed starts. Every test ends with no container or network carrying mrctl's label."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, corpus_files, sequential_wordcount
from jobs import SLOW, WORDCOUNT, make_spec

from mrctl.errors import InfraError
from mrctl.runner import RunOptions, run_job

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("clean_docker")]


@pytest.fixture(scope="module")
def expected():
    return sequential_wordcount(corpus_files())


@pytest.mark.parametrize("workers", [1, 4])
def test_wordcount_in_containers_equals_sequential_count(tmp_path, expected, workers):
    spec = make_spec(tmp_path, WORDCOUNT, corpus_files(), backend="docker", workers=workers,
                     chunk_size=512 << 10, reducers=3)
    final = run_job(spec)
    assert spec.output_path.read_text(encoding="utf-8") == expected
    assert final.status == "succeeded" and final.map.done == final.map.total


def _container_of(host, job_id: str, worker: str) -> str | None:
    for c in host.containers({"mrctl.job-id": job_id, "mrctl.role": "worker"}):
        if c.name.endswith(f"-{worker}") and c.status == "running":
            return c.name
    return None


def test_docker_kill_mid_map_and_mid_reduce_keeps_output_exact(tmp_path, expected, docker_host):
    spec = make_spec(tmp_path, SLOW, corpus_files(), mapper="SlowMapper", reducer="SlowReducer",
                     backend="docker", workers=3, chunk_size=256 << 10, reducers=3)
    killed: dict[str, str] = {}

    def chaos(snap):
        for row in snap.workers:
            for phase, state in (("map", "mapping"), ("reduce", "reducing")):
                if row.state == state and phase not in killed:
                    name = _container_of(docker_host, snap.job_id, row.name)
                    if name:
                        docker_host.kill(name)
                        killed[phase] = name

    final = run_job(spec, on_snapshot=chaos)
    assert set(killed) == {"map", "reduce"}
    assert spec.output_path.read_text(encoding="utf-8") == expected
    assert sum(e.kind == "replaced" for e in final.events) >= 2, final.events


def test_failed_start_leaves_nothing_and_shows_redis_logs(tmp_path):
    spec = make_spec(tmp_path, WORDCOUNT, corpus_files()[:1], backend="docker", workers=2)
    with pytest.raises(InfraError) as info:
        run_job(spec, RunOptions(redis_memory="not-a-size"))
    assert "Redis" in str(info.value) and "maxmemory" in str(info.value)
    assert not spec.output_path.exists()
    # no_docker_leftovers checks that the network and containers are gone


def _mrctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mrctl", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_keep_then_status_logs_and_down(tmp_path, expected):
    out = tmp_path / "wc.json"
    run = _mrctl("run", "jobspecs/wordcount.yaml", "--workers", "2", "--keep", "--plain",
                 "--input", str(corpus_files()[0]), "--output", str(out))
    assert out.read_text(encoding="utf-8") == sequential_wordcount(corpus_files()[:1])

    status = json.loads(_mrctl("status", "--json").stdout)
    assert len(status) == 1
    cluster = status[0]
    assert cluster["job_name"] == "wordcount" and cluster["state"] == "succeeded"
    assert cluster["map_done"] == cluster["map_total"] > 0
    assert {w["name"] for w in cluster["workers"]} == {"worker-1", "worker-2"}
    assert "worker-1" in _mrctl("status").stdout

    logs = _mrctl("logs", "worker-2").stdout + _mrctl("logs", "worker-1").stdout
    assert "task m:0 attempt 1 start" in logs and " done: " in logs
    missing = _mrctl("logs", "worker-9", check=False)
    assert missing.returncode == 2 and "worker-1" in missing.stderr and "redis" in missing.stderr

    down = _mrctl("down", "--job", cluster["cluster"])
    assert cluster["cluster"] in down.stderr
    assert "No mrctl cluster is running" in _mrctl("status").stdout
    assert run.returncode == 0
