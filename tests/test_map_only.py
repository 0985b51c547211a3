"""Issue 12, item 6: map-only jobs (`reducers: 0`): the mapper's output is the job's output, in
input order, byte-identical across backends and chunk sizes. Expected from plain Python."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import corpus_files

JOB = '''
from mrctl import Mapper


class LongLines(Mapper):
    """Grep-like: the lines longer than `min` characters, keyed by file and length."""

    def map(self, line):
        if len(line) > self.params["min"]:
            yield self.input_path.rsplit("/", 1)[-1], [len(line), line[:20]]
'''


def _expected(books, minimum: int) -> str:
    rows = []
    for book in books:
        with open(book, encoding="utf-8", errors="replace", newline=None) as f:
            for line in f:
                line = line.rstrip("\n")
                if len(line) > minimum:
                    rows.append(json.dumps({"key": book.name, "value": [len(line), line[:20]]},
                                           ensure_ascii=False))
    return "\n".join(rows) + "\n"


@pytest.mark.slow
@pytest.mark.parametrize("backend,chunk", [("inline", "1MiB"), ("local", "16KiB"), ("local", "1MiB"),
                                           pytest.param("docker", "64KiB", marks=pytest.mark.docker)])
def test_a_map_only_job_writes_the_mapper_output_in_input_order(tmp_path, backend, chunk, request):
    if backend == "docker":
        request.getfixturevalue("clean_docker")
    books = corpus_files()[:2]
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "job.yaml").write_text(
        f"name: long-lines\ninput: {json.dumps([str(b) for b in books])}\n"
        "job: {module: job.py, mapper: LongLines}\nreducers: 0\nparams: {min: 72}\n"
        f"backend: {backend}\nworkers: 2\nchunk_size: {chunk}\n")
    proc = subprocess.run([sys.executable, "-m", "mrctl", "run", "job.yaml", "--plain", "-o", "out.jsonl"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = _expected(books, 72)
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8") == expected
    assert f"records out {expected.count(chr(10))}" in proc.stderr  # the summary counts the output


@pytest.mark.slow
def test_a_reducer_is_required_unless_the_job_is_map_only(tmp_path):
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "in.txt").write_text("x\n")
    (tmp_path / "job.yaml").write_text("name: j\ninput: in.txt\njob: {module: job.py, mapper: LongLines}\n")
    proc = subprocess.run([sys.executable, "-m", "mrctl", "validate", "job.yaml"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "job.reducer: missing (required unless reducers: 0" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "mrctl", "run", "job.yaml", "--reducers", "0", "--backend",
                           "inline", "--param", "min=0", "-o", "out.jsonl"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out.jsonl").read_text()) == {"key": "in.txt", "value": [1, "x"]}


def test_a_map_only_job_cannot_write_one_json_object(tmp_path):
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "in.txt").write_text("x\n")
    (tmp_path / "job.yaml").write_text("name: j\ninput: in.txt\njob: {module: job.py, mapper: LongLines}\n"
                                       "reducers: 0\n")
    proc = subprocess.run([sys.executable, "-m", "mrctl", "validate", "job.yaml"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "repeated keys included" in proc.stderr and ".jsonl" in proc.stderr
