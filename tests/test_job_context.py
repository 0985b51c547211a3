"""Issue 12, items 1 and 4: what job code knows about its task (input file as the user named it,
its tag, task id, attempt) and the job's params, the same on every backend. Expected outputs are
computed here in plain Python from the input files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest
from conftest import ROOT

JOIN = '''
from mrctl import Mapper, Reducer


class WhereMapper(Mapper):
    """An inverted index that also records each task's context."""

    def setup(self):
        self.seen = (self.task_id[:2], self.attempt, self.input_tag)

    def map(self, line):
        for word in line.split():
            yield word, [self.input_path, self.input_tag, self.params["scale"]]
        yield "__context__", [self.task_id[:2], self.attempt, self.input_path, self.input_tag]


class IndexReducer(Reducer):
    def reduce(self, key, values):
        if key == "__context__":
            return sorted({tuple(v) for v in values})
        assert self.task_id.startswith("r:") and self.attempt >= 1 and self.input_path is None
        return sorted({(path, tag, scale * self.params["scale"]) for path, tag, scale in values})
'''


def _job(tmp_path, backend: str) -> tuple[str, dict]:
    (tmp_path / "job.py").write_text(JOIN)
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "a.txt").write_text("ada grace\nlin\n")
    (tmp_path / "users" / "b.txt").write_text("grace\n")
    (tmp_path / "orders.txt").write_text("ada ada\nzed\n")
    spec = tmp_path / "join.yaml"
    spec.write_text(
        "name: join\n"
        "input:\n  - {path: users/, tag: user}\n  - {path: orders.txt, tag: order}\n"
        "job: {module: job.py, mapper: WhereMapper, reducer: IndexReducer}\n"
        f"params: {{scale: 2}}\nbackend: {backend}\nworkers: 2\nreducers: 3\nchunk_size: 8\n")
    files = {"users/a.txt": "user", "users/b.txt": "user", "orders.txt": "order"}
    return str(spec), files


def _expected(tmp_path, files: dict, scale: int) -> dict:
    index: dict[str, set] = defaultdict(set)
    for name, tag in files.items():
        for word in (tmp_path / name).read_text().split():
            index[word].add((name, tag, scale * scale))
    out = {w: sorted(list(t) for t in v) for w, v in index.items()}
    out["__context__"] = sorted(["m:", 1, name, tag] for name, tag in files.items())
    return dict(sorted(out.items()))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inline", "local", pytest.param("docker", marks=pytest.mark.docker)])
def test_task_context_and_params_on_every_backend(tmp_path, backend, request):
    if backend == "docker":
        request.getfixturevalue("clean_docker")
    spec, files = _job(tmp_path, backend)
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "mrctl", "run", spec, "--plain", "-o", str(out), "--param",
                           "scale=3"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got == json.loads(json.dumps(_expected(tmp_path, files, 3)))


@pytest.mark.slow
def test_validate_shows_params_and_input_mappings_are_checked(tmp_path):
    spec, _ = _job(tmp_path, "inline")
    proc = subprocess.run([sys.executable, "-m", "mrctl", "validate", spec], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "param scale = 2" in proc.stdout
    text = (tmp_path / "join.yaml").read_text()
    for bad, needle in [("tag: user}", "tag: 7}"), ("tag: order}", "format: xml}")]:
        (tmp_path / "join.yaml").write_text(text.replace(bad, needle))
        proc = subprocess.run([sys.executable, "-m", "mrctl", "validate", spec], cwd=ROOT,
                              capture_output=True, text=True)
        assert proc.returncode == 2 and "join.yaml:2: input:" in proc.stderr, proc.stderr
    (tmp_path / "join.yaml").write_text(text.replace("params: {scale: 2}", "params: {scale: !!binary aGk=}"))
    proc = subprocess.run([sys.executable, "-m", "mrctl", "validate", spec], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "params: scale: expected plain data" in proc.stderr, proc.stderr
