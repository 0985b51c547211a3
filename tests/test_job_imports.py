"""What a job can import is the same on every backend, and never comes from the caller's current
directory (issue 24, point 5): the standard import path of the worker's Python, then the modules
beside the job module that it imports (mrctl.spec.job_files), which travel with its code.

The runs go through the `mrctl` command (the console script, as a user runs it: its own
sys.path has no current directory either), from a directory that is not the job's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import corpus_files, sequential_wordcount

MRCTL = str(Path(sys.executable).parent / "mrctl")

POISON = 'raise ImportError("the csv.py of {where} was imported")\n'

# The word count, its words found by helper.py beside it (which imports text_rules.py, its own
# sibling); `import csv` too: a csv.py beside the job must not replace the standard library's.
JOB = '''
import csv
from mrctl import Mapper, Reducer
from helper import words

assert csv.QUOTE_MINIMAL == 0 and hasattr(csv, "reader")


class WordMapper(Mapper):
    def map(self, line):
        for word in words(line):
            yield word, 1


class SumReducer(Reducer):
    def reduce(self, key, values):
        return sum(values)
'''
HELPER = '''
import text_rules


def words(line):
    return [w.lower() for w in text_rules.WORD.findall(line)]
'''
TEXT_RULES = 'import re\n\nWORD = re.compile(r"[^\\W\\d_]+")\n'


def _job(folder: Path, backend: str, job: str = JOB) -> tuple[Path, Path]:
    """A word count in `folder`, its helpers beside it; (spec, input)."""
    folder.mkdir(parents=True)
    lines = corpus_files()[0].read_text(encoding="utf-8", errors="replace").splitlines(True)[:5000]
    (folder / "in.txt").write_text("".join(lines), encoding="utf-8")
    (folder / "job.py").write_text(job)
    (folder / "helper.py").write_text(HELPER)
    (folder / "text_rules.py").write_text(TEXT_RULES)
    spec = folder / "job.yaml"
    spec.write_text(f"name: imports\ninput: in.txt\njob: {{module: job.py, mapper: WordMapper, reducer: SumReducer}}\n"
                    f"output: out.json\nbackend: {backend}\nworkers: 2\nchunk_size: 64KiB\nmax_attempts: 1\n")
    return spec, folder / "in.txt"


def _run(spec: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([MRCTL, "run", str(spec), "--quiet"], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("cwd", ["the spec's folder", "another folder"])
def test_a_csv_py_in_the_callers_directory_and_beside_the_spec_breaks_no_local_worker(tmp_path, cwd):
    spec, data = _job(tmp_path / "job", "local")
    (spec.parent / "csv.py").write_text(POISON.format(where="the spec's folder"))
    caller = spec.parent if cwd == "the spec's folder" else tmp_path / "caller"
    caller.mkdir(exist_ok=True)
    (caller / "csv.py").write_text(POISON.format(where="the caller's folder"))
    done = _run(spec, caller)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (spec.parent / "out.json").read_text() == sequential_wordcount([data])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inline", "local", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_helper_beside_the_job_module_is_imported_on_every_backend(tmp_path, backend, request):
    if backend == "docker":
        request.getfixturevalue("clean_docker")
    spec, data = _job(tmp_path / "project" / "jobs", backend)
    caller = tmp_path / "project"  # the user runs `mrctl run jobs/job.yaml` from above
    done = _run(spec, caller)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (spec.parent / "out.json").read_text() == sequential_wordcount([data])


@pytest.mark.slow
def test_a_module_in_the_callers_directory_is_not_importable_by_a_local_job(tmp_path):
    """Only the job's own directory travels: a module that happens to be in the directory the
    user runs mrctl from is not the job's (it would not reach an inline or docker run either)."""
    spec, _ = _job(tmp_path / "job", "local", JOB.replace("from helper import words", "from caller_only import words"))
    caller = tmp_path / "caller"
    caller.mkdir()
    (caller / "caller_only.py").write_text(HELPER)
    (caller / "text_rules.py").write_text(TEXT_RULES)
    done = _run(spec, caller)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "No module named 'caller_only'" in done.stderr
    assert not (spec.parent / "out.json").exists()
