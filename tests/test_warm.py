"""Warm clusters with real containers: `mrctl up`, jobs run one after another with
`--cluster`, each isolated by its job id and cleaned up after, one job at a time, workers
replaced as in any run, and `mrctl down --cluster` removes everything. Every test ends with no
container or network of this session left (clean_docker)."""

from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, SESSION, SESSION_LABEL, corpus_files, sequential_wordcount, word_counts
from jobs import GATED, SLOW, WORDCOUNT, make_spec
from procs import run_mrctl as _mrctl

import mrctl
from mrctl.backends import credentials, warm
from mrctl.backends import fleet as clusters
from mrctl.backends.docker import short_name
from mrctl.broker import Broker
from mrctl.errors import JobFailed, SpecError
from mrctl.master.chaos import ChaosPlan
from mrctl.master.driver import RunOptions, run_job
from mrctl.spec.jobspec import Overrides, load_spec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("clean_docker")]


@pytest.fixture(scope="module")
def expected():
    return sequential_wordcount(corpus_files())


@pytest.fixture
def cluster(docker_host):
    """A warm 2-worker cluster of this test's own, removed afterwards if the test did not."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    warm.up(name, workers=2)
    yield name
    if docker_host.containers({"mrctl.cluster": name}) or docker_host.networks({"mrctl.cluster": name}):
        clusters.down(None, False, name)


def _broker(docker_host, name: str) -> Broker:
    (redis,) = docker_host.containers({"mrctl.cluster": name, "mrctl.role": "redis"})
    return Broker(clusters.redis_url(redis))


def _job_keys(broker: Broker) -> set[str]:
    """Keys of jobs (mrctl:<job>:...), leaving out the cluster's own (lock, workers, history)."""
    return {k.decode() for k in broker.r.scan_iter(match="mrctl:*:*")}


def _containers(docker_host, name: str) -> dict[str, str]:
    return {c.id: c.status for c in docker_host.containers({"mrctl.cluster": name})}


def test_up_runs_jobs_in_turn_then_down_removes_everything(tmp_path, docker_host, expected):
    name = f"t-{uuid.uuid4().hex[:8]}"
    up = _mrctl("up", "--workers", "2", "--name", name)
    assert up.stdout.strip() == name and "warm cluster" in up.stderr
    broker = _broker(docker_host, name)
    try:
        started = _containers(docker_host, name)
        books = corpus_files()[0].parent
        run1 = _mrctl("run", "jobspecs/wordcount.yaml", "--cluster", name, "--input", books,
                      "--chunk-size", "512KiB", "--output", tmp_path / "wc1.json", "--plain")
        assert (tmp_path / "wc1.json").read_text(encoding="utf-8") == expected
        job1 = re.search(r"job (\S+) on warm cluster " + name, run1.stderr).group(1)
        assert not _job_keys(broker), "the first job's keys outlived it"

        seen: list[set[str]] = []
        spec = load_spec(ROOT / "jobspecs/wordcount.yaml",
                         Overrides(inputs=(str(books),), output=str(tmp_path / "wc2.json"), chunk_size="512KiB"))
        final = run_job(spec, RunOptions(cluster=name), on_snapshot=lambda snap: seen.append(_job_keys(broker)))
        assert (tmp_path / "wc2.json").read_text(encoding="utf-8") == expected
        job2 = final.job_id
        assert any(seen) and all(k.startswith(f"mrctl:{job2}:") for keys in seen for k in keys), seen
        assert not _job_keys(broker)
        assert _containers(docker_host, name) == started  # no start, no teardown, no replacement

        (status,) = [s for s in json.loads(_mrctl("status", "--json").stdout) if s["cluster"] == name]
        assert status["warm"] and status["state"] == "idle"
        assert [(r["job"], r["name"], r["state"]) for r in status["history"]] == [
            (job2, "wordcount", "succeeded"), (job1, "wordcount", "succeeded")]
        text = _mrctl("status").stdout
        assert f"cluster {name}  warm, 2 workers  idle" in text and job1 in text and job2 in text
    finally:
        broker.close()
        down = _mrctl("down", "--cluster", name)
    assert f"removed cluster {name}: 3 containers" in down.stderr
    assert not docker_host.containers({"mrctl.cluster": name})
    assert not docker_host.networks({"mrctl.cluster": name}) and not docker_host.volumes({"mrctl.cluster": name})
    assert not credentials.cluster_file(name).exists()


# The same file name, job.py, with two different codes; each map task also reports the
# token its module drew when it was executed, so that a module reused from an earlier job shows.
SAME_NAME = WORDCOUNT + '''
import uuid

TOKEN = uuid.uuid4().hex  # drawn once per execution of this module


class TokenMapper(WordMapper):
    def map(self, line):
        for word, one in super().map(line):
            yield {transform}, one

    def teardown(self):
        yield "~token", TOKEN


class TokenReducer(SumReducer):
    def reduce(self, key, values):
        return sorted(set(values)) if key == "~token" else sum(values)
'''


def _same_name_job(folder: Path, transform: str) -> Path:
    folder.mkdir()
    (folder / "job.py").write_text(SAME_NAME.format(transform=transform))
    (folder / "job.yaml").write_text("name: same-name\njob: {module: job.py, mapper: TokenMapper, "
                                     "reducer: TokenReducer}\nchunk_size: 256KiB\nreducers: 3\n")
    return folder / "job.yaml"


def test_jobs_whose_modules_share_a_file_name_get_their_own_code(tmp_path, cluster):
    books = corpus_files()
    lower = _same_name_job(tmp_path / "a", "word")
    upper = _same_name_job(tmp_path / "b", "word.upper()")
    results = [dict(mrctl.run(spec, cluster=cluster, inputs=[str(b) for b in books],
                              output=str(tmp_path / f"out{i}.jsonl")).pairs())
               for i, spec in enumerate((lower, upper, lower))]
    tokens = [set(r.pop("~token")) for r in results]
    reference = dict(word_counts(books))
    upper_reference: collections.Counter[str] = collections.Counter()
    for word, n in reference.items():
        upper_reference[word.upper()] += n
    assert results[0] == results[2] == reference
    assert results[1] == dict(upper_reference)
    # the first job's module was executed afresh for the third one: no state carried over
    assert tokens[0] and tokens[2] and not tokens[0] & tokens[2]


def test_multi_step_jobs_on_a_warm_cluster_leave_no_step_behind(tmp_path, cluster, docker_host):
    import references

    data = ROOT / "jobspecs" / "data"
    broker = _broker(docker_host, cluster)
    try:
        top = mrctl.run(ROOT / "jobspecs/dpkg_top.yaml", cluster=cluster, output=str(tmp_path / "top.json"))
        logs = [data / "dpkg.log", data / "dpkg.log.1.gz"]
        assert json.loads(top.output_path.read_text()) == references.dpkg_top(logs)
        assert not _job_keys(broker)
        ranks = mrctl.run(ROOT / "jobspecs/pagerank.yaml", cluster=cluster, output=str(tmp_path / "ranks.json"))
        got, want = json.loads(ranks.output_path.read_text()), references.pagerank(data / "debian-deps.tsv", 0.85, 10)
        assert got.keys() == want.keys() and max(abs(got[k] - want[k]) / want[k] for k in want) < 1e-9
        assert ranks.snapshot.steps == 12 and not _job_keys(broker)
        assert [r["name"] for r in broker.runs()] == ["pagerank", "dpkg_top"]
    finally:
        broker.close()


def test_a_second_job_is_refused_while_one_runs(tmp_path, cluster, docker_host, expected):
    (tmp_path / "gated.py").write_text(GATED)
    (tmp_path / "gated.yaml").write_text(
        "name: gated\njob: {module: gated.py, mapper: GatedMapper, reducer: SumReducer}\n"
        "chunk_size: 512KiB\n")
    books = corpus_files()[0].parent
    first = subprocess.Popen([sys.executable, "-m", "mrctl", "run", tmp_path / "gated.yaml", "--cluster", cluster,
                              "--input", books, "--output", tmp_path / "gated.json", "--plain"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    broker = _broker(docker_host, cluster)
    try:
        deadline = time.monotonic() + 60
        while not (held := broker.cluster_holder()) or broker.current_job() is None:
            assert first.poll() is None and time.monotonic() < deadline, "the first job did not start"
            time.sleep(0.05)
        job1 = json.loads(held)["job"]
        second = _mrctl("run", "jobspecs/wordcount.yaml", "--cluster", cluster, "--input", books,
                        "--output", tmp_path / "second.json", check=False)
        assert second.returncode == 3, second.stderr
        assert f"warm cluster {cluster} is running job gated ({job1})" in second.stderr
        assert not (tmp_path / "second.json").exists()
        assert f"job gated ({job1})" in _mrctl("status").stdout
        assert broker.cluster_holder() == held  # the refused run left the lock alone

        broker.r.set("test:release", 1)
        output, _ = first.communicate(timeout=120)
        assert first.returncode == 0, output
        assert (tmp_path / "gated.json").read_text(encoding="utf-8") == expected
        assert broker.cluster_holder() is None
        _mrctl("run", "jobspecs/wordcount.yaml", "--cluster", cluster, "--input", books,
               "--output", tmp_path / "third.json")  # the cluster is free again
        assert (tmp_path / "third.json").read_text(encoding="utf-8") == expected
        assert [r["state"] for r in broker.runs()] == ["succeeded", "succeeded"]
    finally:
        broker.close()
        if first.poll() is None:
            first.kill()
            first.communicate()


def test_a_failed_or_interrupted_job_frees_the_cluster(tmp_path, cluster, docker_host, expected):
    books = corpus_files()
    broken = make_spec(tmp_path, WORDCOUNT + "\n\nclass Boom(WordMapper):\n    def map(self, line):\n"
                       "        raise ValueError('boom')\n", books, mapper="Boom", max_attempts=1)
    with pytest.raises(JobFailed, match="boom"):
        run_job(broken, RunOptions(cluster=cluster))

    (tmp_path / "gated.py").write_text(GATED)
    (tmp_path / "gated.yaml").write_text(
        "name: gated\njob: {module: gated.py, mapper: GatedMapper, reducer: SumReducer}\n")
    first = subprocess.Popen([sys.executable, "-m", "mrctl", "run", tmp_path / "gated.yaml", "--cluster", cluster,
                              "--input", books[0], "--output", tmp_path / "gated.json", "--plain"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    broker = _broker(docker_host, cluster)
    try:
        def gated_started() -> bool:  # a worker in its gated setup (a row still showing the
            # failed job's task, beats being a second apart, is not it)
            held = broker.cluster_holder()
            run = held and json.loads(held)["job"]
            return bool(run) and any(w.get("task") and w.get("job") == run for w in broker.worker_rows()[0].values())

        deadline = time.monotonic() + 60
        while not gated_started():
            assert first.poll() is None and time.monotonic() < deadline, "the gated job did not start"
            time.sleep(0.05)
        first.send_signal(signal.SIGINT)
        output, _ = first.communicate(timeout=60)
        assert first.returncode == 130, output
        assert broker.cluster_holder() is None and not (tmp_path / "gated.json").exists()
        assert [r["state"] for r in broker.runs()] == ["interrupted", "failed"]
        # the worker held in the interrupted job's code is cancelled, not left busy
        deadline = time.monotonic() + 15
        while any(w.get("task") for w in broker.worker_rows()[0].values()):
            assert time.monotonic() < deadline, broker.worker_rows()[0]
            time.sleep(0.1)

        spec = make_spec(tmp_path, WORDCOUNT, books, chunk_size=512 << 10)
        run_job(spec, RunOptions(cluster=cluster))
        assert spec.output_path.read_text(encoding="utf-8") == expected
        assert not _job_keys(broker)  # a late event of the interrupted job, if any, swept too
    finally:
        broker.close()
        if first.poll() is None:
            first.kill()
            first.communicate()


def test_settings_that_cannot_apply_and_unknown_clusters_are_refused(tmp_path, docker_host):
    ours = {SESSION_LABEL: SESSION}
    before = docker_host.containers(ours)
    nope = f"nope-{uuid.uuid4().hex[:6]}"
    unknown = _mrctl("run", "jobspecs/wordcount.yaml", "--cluster", nope, check=False)
    assert unknown.returncode == 2 and f"no warm cluster named {nope}" in unknown.stderr
    assert "mrctl up" in unknown.stderr
    down = _mrctl("down", "--cluster", nope, check=False)
    assert down.returncode == 2 and f"no warm cluster named {nope}" in down.stderr
    local = _mrctl("up", "--backend", "local", check=False)
    assert local.returncode == 2 and "Docker clusters only" in local.stderr
    for flags in (["--keep"], ["--workers", "3"], ["--backend", "local"]):
        refused = _mrctl("run", "jobspecs/wordcount.yaml", "--cluster", "any", *flags, check=False)
        assert refused.returncode == 2 and "with --cluster" in refused.stderr, flags
    with pytest.raises(SpecError, match=f"no warm cluster named {nope}"):
        mrctl.run(ROOT / "jobspecs/wordcount.yaml", cluster=nope, output=str(tmp_path / "x.json"))
    assert docker_host.containers(ours) == before  # nothing was started


def test_dead_workers_of_a_warm_cluster_are_replaced_and_the_output_stays_exact(tmp_path, cluster, docker_host,
                                                                                 expected):
    spec = make_spec(tmp_path, SLOW, corpus_files(), mapper="SlowMapper", reducer="SlowReducer",
                     workers=2, chunk_size=256 << 10, reducers=3)
    final = run_job(spec, RunOptions(cluster=cluster, chaos=ChaosPlan(kills=1, every_s=0.5, seed=1)))
    assert spec.output_path.read_text(encoding="utf-8") == expected
    assert final.killed == 1 and any(e.kind == "replaced" for e in final.events), final.events
    (first_victim,) = [c.name for c in docker_host.containers({"mrctl.cluster": cluster, "mrctl.role": "worker"})
                       if c.status != "running"]

    # a worker that dies between two jobs is replaced when the next one starts
    running = [c for c in docker_host.containers({"mrctl.cluster": cluster, "mrctl.role": "worker"})
               if c.status == "running"]
    assert len(running) == 2
    docker_host.kill(running[0].name)
    victim = short_name(running[0].name, cluster)
    spec.output_path.unlink()
    final = run_job(spec, RunOptions(cluster=cluster))
    assert spec.output_path.read_text(encoding="utf-8") == expected
    assert any(e.kind == "replaced" and e.message.startswith(victim) for e in final.events), final.events
    workers = docker_host.containers({"mrctl.cluster": cluster, "mrctl.role": "worker"})
    assert sum(c.status == "running" for c in workers) == 2
    # the worker replaced during the first job was removed when the second one started
    assert len(workers) == 3 and first_victim not in {c.name for c in workers}, [c.name for c in workers]


def test_down_cluster_removes_a_start_killed_before_its_first_container(docker_host):
    """`mrctl up` SIGKILLed after creating the networks: --cluster still finds what it left."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    labels = {SESSION_LABEL: SESSION, "mrctl.cluster": name, "mrctl.cluster-name": name}
    docker_host.create_network(f"mrctl-{name}", labels, internal=True)
    result = clusters.down(None, False, name)
    assert result.docker == [(name, 0)] and not docker_host.networks({"mrctl.cluster": name})
