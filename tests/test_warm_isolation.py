"""A warm cluster's job starts in a clean process (issue 24, point 4): job A leaves every kind
of process state behind on the cluster's only worker — an environment variable, a builtin, a
global on a shared module, another working directory, a seeded random generator and a thread
that keeps running — and job B, run next on the same worker, sees none of it. Both outputs
are checked exactly against plain-Python computations."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, corpus_files, word_counts
from jobs import REDIS_URL, WORDCOUNT

import mrctl
from mrctl.backends import fleet as clusters
from mrctl.backends import warm

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("clean_docker")]

SEED = 2424

LEAKY = WORDCOUNT + f'''
import builtins, os, random, string, tempfile, threading, time

SEED = {SEED}


def _linger():
    while True:  # a job's thread that outlives its task, as a forgotten poller would
        time.sleep(0.05)


class LeakyMapper(WordMapper):
    """Job A: counts words, and leaves its process as dirty as a job can."""

    def teardown(self):
        os.environ["LEAK"] = "job A"
        builtins.LEAK = "job A"
        string.LEAK = "job A"  # a module every job shares
        os.chdir(tempfile.mkdtemp(prefix="leak-"))
        threading.Thread(target=_linger, name="leak-thread", daemon=True).start()
        random.seed(SEED)
        return None


class ObservingMapper(WordMapper):
    """Job B: counts words, and reports what it finds of A's state (keys start with '~')."""

    def teardown(self):
        yield "~env", os.environ.get("LEAK")
        yield "~builtin", getattr(builtins, "LEAK", None)
        yield "~module global", getattr(string, "LEAK", None)
        yield "~cwd", os.getcwd()
        yield "~random seeded by A", random.getstate() == random.Random(SEED).getstate()
        yield "~threads", sorted(t.name for t in threading.enumerate() if t.name.startswith("leak"))


class ListReducer(SumReducer):
    def reduce(self, key, values):
        return values if key.startswith("~") else sum(values)
'''


def _spec(folder: Path, name: str, mapper: str, source: str = LEAKY, extra: str = "") -> Path:
    (folder / f"{name}.py").write_text(source)
    spec = folder / f"{name}.yaml"
    spec.write_text(f"name: {name}\njob: {{module: {name}.py, mapper: {mapper}, reducer: ListReducer}}\n"
                    f"chunk_size: 4MiB\nreducers: 2\n{extra}")
    return spec


@pytest.fixture
def one_worker(docker_host):
    name = f"t-{uuid.uuid4().hex[:8]}"
    warm.up(name, workers=1)
    yield name
    if docker_host.containers({"mrctl.cluster": name}) or docker_host.networks({"mrctl.cluster": name}):
        clusters.down(None, False, name)


def test_job_b_sees_none_of_job_as_process_state(tmp_path, one_worker):
    data = tmp_path / "input.txt"
    with open(corpus_files()[0], encoding="utf-8", errors="replace") as f:
        data.write_text("".join(itertools.islice(f, 2000)), encoding="utf-8")
    counts = dict(word_counts([data]))
    assert counts  # a job with nothing to count would prove little

    a = mrctl.run(_spec(tmp_path, "job-a", "LeakyMapper"), cluster=one_worker, inputs=[str(data)],
                  output=str(tmp_path / "a.jsonl"))
    assert dict(a.pairs()) == counts

    b = mrctl.run(_spec(tmp_path, "job-b", "ObservingMapper"), cluster=one_worker, inputs=[str(data)],
                  output=str(tmp_path / "b.jsonl"))
    # A clean worker process: the image sets no WORKDIR and the cluster no working_dir, so a
    # worker starts in Docker's default, "/"; one map task (one chunk) reports once.
    assert "WORKDIR" not in (ROOT / "Dockerfile.worker").read_text()
    clean = {"~env": [None], "~builtin": [None], "~module global": [None], "~cwd": ["/"],
             "~random seeded by A": [False], "~threads": [[]]}
    assert dict(b.pairs()) == {**counts, **clean}


# The first attempt of the job's map task hangs (counted in the cluster's Redis, since the
# workers are containers); `{hang}` is how it hangs.
HUNG_ONCE = LEAKY + REDIS_URL + """
import redis


def stubborn():  # ignores its interruption (TaskTimeout): only a kill ends it
    while True:
        try:
            time.sleep(3600)
        except BaseException:
            pass


class HungOnceMapper(WordMapper):
    def setup(self):
        if redis.Redis.from_url(redis_url()).incr("test:hung") == 1:
            {hang}
"""
INTERRUPTIBLE = "time.sleep(3600)"
STUBBORN = "stubborn()"


def _workers(docker_host, name: str) -> set[str]:
    return {c.id for c in docker_host.containers({"mrctl.cluster": name, "mrctl.role": "worker"})}


@pytest.mark.parametrize("hang", [INTERRUPTIBLE, STUBBORN], ids=["interruptible", "stubborn"])
def test_a_hung_task_is_interrupted_in_the_runs_process_then_the_next_job_runs(tmp_path, one_worker,
                                                                              docker_host, hang):
    """The keeper signals the run's process, not the worker's main one: a task that gives way
    to its timeout is retried by the same worker (no replacement); one that ignores it is
    killed with its process, the worker replaced, and the next job runs as usual."""
    data = tmp_path / "input.txt"
    data.write_text("alpha beta\n" * 50 + "beta gamma\n" * 20, encoding="utf-8")
    counts = dict(word_counts([data]))
    before = _workers(docker_host, one_worker)
    hung = mrctl.run(_spec(tmp_path, "hung", "HungOnceMapper", HUNG_ONCE.format(hang=hang), "task_timeout: 2\n"),
                     cluster=one_worker, inputs=[str(data)], output=str(tmp_path / "hung.jsonl"))
    assert dict(hung.pairs()) == counts
    assert hung.snapshot.retries >= 1
    assert any("timeout" in e.message for e in hung.snapshot.events), hung.snapshot.events
    after = _workers(docker_host, one_worker)
    assert (after == before) if hang == INTERRUPTIBLE else (after - before)

    b = mrctl.run(_spec(tmp_path, "job-b", "ObservingMapper"), cluster=one_worker, inputs=[str(data)],
                  output=str(tmp_path / "b.jsonl"))
    assert dict(b.pairs())["~env"] == [None] and {k: v for k, v in b.pairs() if k[0] != "~"} == counts
