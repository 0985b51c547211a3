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
from jobs import WORDCOUNT

import mrctl
from mrctl import clusters
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


def _spec(folder: Path, name: str, mapper: str) -> Path:
    (folder / "leaky.py").write_text(LEAKY)
    spec = folder / f"{name}.yaml"
    spec.write_text(f"name: {name}\njob: {{module: leaky.py, mapper: {mapper}, reducer: ListReducer}}\n"
                    "chunk_size: 4MiB\nreducers: 2\n")
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
