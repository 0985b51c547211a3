"""The docker backend with real containers: exact output, killed workers, --keep/status/logs/down,
failed starts. Every test ends with no container or network carrying mrctl's label."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
from conftest import ROOT, corpus_files, sequential_wordcount
from jobs import GATED, SLOW, WORDCOUNT, make_spec
from procs import run_mrctl as _mrctl

from mrctl.errors import InfraError
from mrctl.master.driver import RunOptions, run_job

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
                     backend="docker", workers=3, chunk_size=256 << 10, reducers=6)
    killed: dict[str, str] = {}

    def chaos(snap):
        # as in test_local_backend: a row's "reducing" can outlive a committed reduce (it is the
        # last heartbeat), so kill only while a wave of tasks is still to go and the job runs on
        # long enough to replace the worker
        for row in snap.workers:
            for phase, state, doomed in (("map", "mapping", snap.map.done < snap.map.total - 3),
                                         ("reduce", "reducing", snap.reduce.done <= snap.reduce.total - 3)):
                if row.state == state and doomed and phase not in killed:
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


def test_keep_then_status_logs_and_down(tmp_path, expected, docker_host):
    out = tmp_path / "wc.json"
    run = _mrctl("run", "jobspecs/wordcount.yaml", "--workers", "2", "--keep", "--plain",
                 "--input", str(corpus_files()[0]), "--output", str(out))
    assert out.read_text(encoding="utf-8") == sequential_wordcount(corpus_files()[:1])
    # other clusters (a user's job) may run on this engine too: address ours by its id
    cid = re.search(r"starting cluster (\w+)", run.stderr).group(1)

    status = {c["cluster"]: c for c in json.loads(_mrctl("status", "--json").stdout)}
    cluster = status[cid]
    assert cluster["job_name"] == "wordcount" and cluster["state"] == "succeeded"
    assert cluster["map_done"] == cluster["map_total"] > 0
    assert {w["name"] for w in cluster["workers"]} == {"worker-1", "worker-2"}
    assert "worker-1" in _mrctl("status").stdout

    logs = _mrctl("logs", "worker-2", "--job", cid).stdout + _mrctl("logs", "worker-1", "--job", cid).stdout
    assert "task m:0 attempt 1 start" in logs and " done: " in logs
    missing = _mrctl("logs", "worker-9", "--job", cid, check=False)
    assert missing.returncode == 2 and "worker-1" in missing.stderr and "redis" in missing.stderr

    from mrctl.backends import credentials

    assert credentials.redis_password(cid)  # --keep keeps the state file until `mrctl down`
    # its master exited normally leaving it on purpose: marked so, for `down` on any host
    assert docker_host.volumes({"mrctl.cluster": cid, "mrctl.role": "kept"}) == [f"mrctl-{cid}-kept"]
    down = _mrctl("down", "--job", cid)
    assert cid in down.stderr
    assert cid not in _mrctl("status").stdout
    assert not credentials.cluster_file(cid).exists()
    assert not docker_host.networks({"mrctl.cluster": cid}) and not docker_host.volumes({"mrctl.cluster": cid})
    assert run.returncode == 0


def test_a_users_job_survives_a_test_run(tmp_path, docker_host):
    """A job started outside this test session (no session label) keeps running while a whole
    nested pytest session runs Docker and local tests and cleans up after them."""
    from mrctl.backends.docker import REDIS_PORT
    from mrctl.backends.fleet import redis_url
    from mrctl.broker import Broker

    (tmp_path / "job.py").write_text(GATED)
    name = f"users-job-{uuid.uuid4().hex[:6]}"
    books = corpus_files()[:2]
    (tmp_path / "job.yaml").write_text(
        f"name: {name}\ninput: {json.dumps([str(b) for b in books])}\n"
        "job: {module: job.py, mapper: GatedMapper, reducer: SumReducer}\n"
        "workers: 2\nchunk_size: 256KiB\ntask_timeout: 600\n")
    user_env = {k: v for k, v in os.environ.items() if k not in ("MRCTL_LABELS", "MRCTL_TEST_RUN")}  # not ours
    user = subprocess.Popen([sys.executable, "-m", "mrctl", "run", str(tmp_path / "job.yaml"), "--plain",
                             "--output", str(tmp_path / "out.json")], cwd=ROOT, env=user_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (redis := [c for c in docker_host.containers({"mrctl.job": name, "mrctl.role": "redis"})
                             if c.status == "running" and REDIS_PORT in c.host_ports]):
            assert user.poll() is None and time.monotonic() < deadline, "the user's job did not start"
            time.sleep(0.2)
        nested = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/test_docker_backend.py::test_failed_start_leaves_nothing_and_shows_redis_logs",
             "tests/test_docker_backend.py::test_wordcount_in_containers_equals_sequential_count[1]",
             "tests/test_local_backend.py::test_wordcount_equals_sequential_count[2-65536-3]"],
            cwd=ROOT, env=user_env, capture_output=True, text=True, timeout=600)
        assert nested.returncode == 0, nested.stdout[-3000:]
        assert user.poll() is None, "the user's job ended during the test run"
        (r,) = redis
        broker = Broker(redis_url(r))
        broker.r.set("test:release", 1)
        broker.close()
        output, _ = user.communicate(timeout=300)
        assert user.returncode == 0, output
        assert (tmp_path / "out.json").read_text(encoding="utf-8") == sequential_wordcount(books)
    finally:
        if user.poll() is None:
            user.terminate()  # the job tears its own cluster down
            user.communicate(timeout=60)


SNEAKY = '''
from conftest import corpus_files
from jobs import WORDCOUNT, make_spec
from mrctl.master.driver import run_job


def test_runs_a_docker_job_without_the_marker(tmp_path):
    run_job(make_spec(tmp_path, WORDCOUNT, corpus_files()[:1], backend="docker", workers=1))
'''


def test_not_docker_selection_fails_when_a_container_starts(tmp_path):
    """The session check behind `-m "not docker"`: an unmarked test that starts a container
    fails the run, naming the containers, although the test itself passed."""
    (tmp_path / "test_sneaky.py").write_text(SNEAKY)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    nested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                             "-m", "not docker", "--rootdir", str(tmp_path), str(tmp_path / "test_sneaky.py")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert nested.returncode == 1, nested.stdout
    assert "1 passed" in nested.stdout and "started containers: ['mrctl-" in nested.stdout


def test_listing_clusters_while_one_tears_down_skips_vanished_containers(docker_host):
    """`mrctl status` during another cluster's teardown: containers removed between the
    listing and their inspection are skipped, not an error (issue 11.7)."""
    import threading

    from conftest import SESSION, SESSION_LABEL

    from mrctl.images.build import image_state

    cluster = f"race{uuid.uuid4().hex[:6]}"
    labels = {"mrctl.cluster": cluster, "mrctl.role": "worker", SESSION_LABEL: SESSION}
    base = image_state(docker_host).base
    names = [f"mrctl-{cluster}-worker-{i}" for i in range(12)]
    for name in names:
        docker_host.run_container(name, base, command=["sleep", "300"], labels=labels)
    remover = threading.Thread(target=lambda: [docker_host.remove_container(n) for n in names])
    remover.start()
    seen = []
    while remover.is_alive():
        seen.append(len(docker_host.containers({"mrctl.cluster": cluster})))  # must not raise
    remover.join()
    assert docker_host.containers({"mrctl.cluster": cluster}) == []
    assert seen and max(seen) <= len(names)


def test_a_worker_killed_during_start_up_is_replaced(tmp_path, docker_host, expected):
    """Issue 11.6: `docker kill` of a worker before it sent its first heartbeat used to fail the
    whole job ('worker-2 exited during start-up', exit 3); it is replaced like any dead worker."""
    import threading

    name = f"startup-kill-{uuid.uuid4().hex[:6]}"
    spec = make_spec(tmp_path, WORDCOUNT, corpus_files(), backend="docker", workers=2,
                     chunk_size=512 << 10, reducers=2)
    spec = dataclasses.replace(spec, name=name)
    killed: list[str] = []

    def kill_worker_2_as_it_starts():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for c in docker_host.containers({"mrctl.job": name, "mrctl.role": "worker"}):
                if c.name.endswith("-worker-2") and c.status == "running":
                    docker_host.kill(c.name)
                    killed.append(c.name)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_worker_2_as_it_starts)
    killer.start()
    final = run_job(spec)
    killer.join()
    assert killed, "worker-2 was never seen running"
    assert spec.output_path.read_text(encoding="utf-8") == expected
    assert any(e.kind == "replaced" and e.message.startswith("worker-2") for e in final.events), final.events
