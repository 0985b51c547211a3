"""Errors point at the user's code (issue 23, point 7): a map that returns instead of yielding,
a reducer that fails on a key, a job module that cannot be imported, and what a failed inline
run's summary shows. Through the CLI, as a user meets them; expected texts are computed here
from the job's source and the input, in plain Python."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import pytest
from procs import run_mrctl

RETURNS = '''from mrctl import Mapper, Reducer


class ReturnsTuple(Mapper):
    def map(self, line):
        return line.split()[0], 1


class ReturnsWords(Mapper):
    def map(self, line):
        return line.split()


class ReturnsNothing(Mapper):
    def map(self, line):
        line.split()


class Words(Mapper):
    def map(self, line):
        for word in line.split():
            yield word, 1


class Sum(Reducer):
    def reduce(self, key, values):
        return sum(values)


class YieldsWords(Reducer):
    def reduce(self, key, values):
        yield key


class FailsOnOne(Reducer):
    def reduce(self, key, values):
        if key.startswith("zz"):
            raise ValueError("cannot reduce this one")
        return sum(values)
'''


def _def_line(source: str, cls: str, method: str) -> int:
    """The 1-based line of `def method` inside `class cls`, found in the text."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"class {cls}("))
    return next(i for i in range(start, len(lines)) if lines[i].strip().startswith(f"def {method}(")) + 1


def _spec(tmp_path: Path, mapper: str, reducer: str, lines: list[str], **settings: object) -> Path:
    job = tmp_path / "job.py"
    job.write_text(RETURNS)
    data = tmp_path / "in.txt"
    data.write_text("".join(f"{line}\n" for line in lines))
    extra = "".join(f"{k}: {v}\n" for k, v in settings.items())
    spec = tmp_path / "job.yaml"
    spec.write_text(f"name: errs\ninput: in.txt\noutput: out.json\nmax_attempts: 1\n{extra}"
                    f"job: {{module: job.py, mapper: {mapper}, reducer: {reducer}}}\n")
    return spec


LINES = ["ab cd", "ef gh ij", "ab kl"]  # two-letter words: a returned word unpacks as a "pair"


@pytest.mark.parametrize("backend", ["inline", "local"])
@pytest.mark.parametrize(("mapper", "what"), [
    ("ReturnsTuple", "returned a tuple ('ab', 1)"),
    ("ReturnsWords", "returned a list ['ab', 'cd']"),
    ("ReturnsNothing", "returned None"),
])
def test_a_map_that_returns_instead_of_yielding_names_its_def(tmp_path, backend, mapper, what):
    """Before: a confusing unpacking error inside mrctl (tasks.py), or, for a list of
    two-letter words, exit 0 with ('a', 'b') pairs as the output."""
    proc = run_mrctl("run", _spec(tmp_path, mapper, "Sum", LINES), "--backend", backend, check=False)
    line = _def_line(RETURNS, mapper, "map")
    expected = f"map() must yield (key, value) pairs; {mapper}.map in {tmp_path / 'job.py'}:{line} {what}"
    assert proc.returncode == 1, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr  # mrctl's own frames say nothing to the user
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_a_reducer_yielding_a_non_pair_names_its_def(tmp_path, backend):
    """One partition: the first key reduced is the least, 'ab'."""
    proc = run_mrctl("run", _spec(tmp_path, "Words", "YieldsWords", LINES, reducers=1), "--backend", backend,
                     check=False)
    line = _def_line(RETURNS, "YieldsWords", "reduce")
    assert proc.returncode == 1, proc.stderr
    assert (f"reduce() must yield (key, value) pairs or return one value; YieldsWords.reduce in "
            f"{tmp_path / 'job.py'}:{line} yielded a str 'ab'") in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_a_reducer_failure_names_its_key_and_partition(tmp_path, backend):
    """The key is cut to its first 200 characters; the partition is the key's crc32 mod R."""
    long_key = "zz" + "y" * 300
    lines = ["ab cd", f"ef {long_key}", "ab"]
    proc = run_mrctl("run", _spec(tmp_path, "Words", "FailsOnOne", lines, reducers=3), "--backend", backend,
                     check=False)
    partition = zlib.crc32(long_key.encode()) % 3
    shown = repr(long_key)[:200]
    assert proc.returncode == 1, proc.stderr
    assert f"task r:{partition} failed" in proc.stderr
    assert f"input: partition {partition}" in proc.stderr
    assert shown in proc.stderr and repr(long_key)[:201] not in proc.stderr
    assert "ValueError: cannot reduce this one" in proc.stderr


def test_a_failed_inline_run_shows_what_it_ran(tmp_path):
    """Before: `phases: -`, `map tasks 0/0`, `reduce tasks 0/0`, `records in 0`. Inline runs
    reduce tasks in partition order, so those before the failing key's partition are done."""
    words = [f"w{i}" for i in range(40)] + ["zz"]
    lines = [" ".join(words[i:i + 5]) for i in range(0, len(words), 5)]
    spec = _spec(tmp_path, "Words", "FailsOnOne", lines, reducers=4, chunk_size=64)
    size = (tmp_path / "in.txt").stat().st_size
    proc = run_mrctl("run", spec, "--backend", "inline", check=False)
    assert proc.returncode == 1, proc.stderr
    failing = zlib.crc32(b"zz") % 4
    chunks = _chunks([len(line) + 1 for line in lines], 64)
    summary = proc.stderr[proc.stderr.index("job errs"):]
    assert re.search(r"phases: map \d+\.\d\ds, reduce \d+\.\d\ds", summary), summary
    assert f"map tasks {chunks}/{chunks} ({size} B), reduce tasks {failing}/4" in summary
    assert f"records in {len(lines)}," in summary
    assert "failed attempts 1 " in summary and "failed tasks 1" in summary


def _chunks(line_sizes: list[int], chunk_size: int) -> int:
    """Chunks cut on line boundaries, as the design says: a chunk takes whole lines until it
    holds at least chunk_size bytes; the last one takes what is left."""
    count, held = 0, 0
    for size in line_sizes:
        held += size
        if held >= chunk_size:
            count, held = count + 1, 0
    return count + (1 if held else 0)


@pytest.mark.parametrize(("prelude", "error"), [
    ("import os\nimport mrctl_no_such_package_xyz\n",
     "ModuleNotFoundError: No module named 'mrctl_no_such_package_xyz'"),
    ("import os\nLIMIT = int(os.environ.get('MRCTL_NOT_SET_XYZ', 'ten'))\n",
     "ValueError: invalid literal for int() with base 10: 'ten'"),
])
def test_validate_imports_the_job_module_and_reports_one_line(tmp_path, prelude, error):
    spec = _spec(tmp_path, "Words", "Sum", LINES)
    (tmp_path / "job.py").write_text(prelude + RETURNS)
    proc = run_mrctl("validate", spec, check=False)
    assert proc.returncode == 2, proc.stderr
    line = len(prelude.splitlines())  # the prelude's last line raises
    assert proc.stderr.splitlines() == [
        f"mrctl: error: {tmp_path / 'job.py'}:{line}: cannot import the job module: {error}"]
    (tmp_path / "job.py").write_text(RETURNS)
    assert run_mrctl("validate", spec).returncode == 0
