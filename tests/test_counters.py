"""Issue 12, item 5: the job's own counters (exactly once per committed attempt) and skipped bad
records, on every backend. Expected outputs and counts are computed here in plain Python from
the input files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

NUMBERS = '''
import os
from mrctl import Mapper, Reducer


class NumMapper(Mapper):
    """Sums numbers by residue mod 7, counting lines per input tag and numbers by parity;
    a line that is not a number (a header) raises in int()."""

    def map(self, line):
        self.increment_counter("lines", self.input_tag)
        n = int(line)
        self.increment_counter("numbers", "even" if n % 2 == 0 else "odd")
        self.increment_counter("numbers", "total", n)
        yield n % 7, n


class DyingMapper(NumMapper):
    """Counts like NumMapper, then the first attempt of m:0 kills its worker and the first
    attempt of m:1 raises: neither attempt's counts may reach the job's counters."""

    def teardown(self):
        if self.attempt == 1 and self.task_id == "m:0":
            os._exit(1)
        if self.attempt == 1 and self.task_id == "m:1":
            raise RuntimeError("first attempt of m:1 fails after counting")


class SumReducer(Reducer):
    def reduce(self, key, values):
        self.increment_counter("reduce", "keys")
        self.increment_counter("reduce", "values", len(values))
        return sum(values)
'''


def _inputs(tmp_path: Path) -> dict[str, str]:
    """Two inputs by tag; the csv starts with a header line that int() refuses."""
    (tmp_path / "a.txt").write_text("n\n" + "".join(f"{i}\n" for i in range(1, 40)))
    (tmp_path / "b.txt").write_text("".join(f"{i * 3}\n" for i in range(100, 160)))
    return {"a.txt": "a", "b.txt": "b"}


def _spec(tmp_path: Path, backend: str, mapper: str = "NumMapper", bad: str = "{policy: skip, max: 3}",
          extra: str = "") -> Path:
    (tmp_path / "job.py").write_text(NUMBERS)
    spec = tmp_path / "nums.yaml"
    spec.write_text(
        "name: nums\n"
        "input: [{path: a.txt, tag: a}, {path: b.txt, tag: b}]\n"
        f"job: {{module: job.py, mapper: {mapper}, reducer: SumReducer}}\n"
        f"bad_records: {bad}\n"
        f"backend: {backend}\nworkers: 2\nreducers: 3\nchunk_size: 40\n{extra}")
    return spec


def _expected(tmp_path: Path, files: dict[str, str]) -> tuple[dict, dict, list[tuple[str, int]]]:
    """(output, counters, bad lines) by a plain loop over the files."""
    sums: dict[int, int] = defaultdict(int)
    counters: dict[str, Counter] = defaultdict(Counter)
    bad = []
    for name, tag in files.items():
        for number, line in enumerate((tmp_path / name).read_text().splitlines(), 1):
            counters["lines"][tag] += 1
            if not line.strip().lstrip("-").isdigit():
                bad.append((name, number))
                continue
            n = int(line)
            counters["numbers"]["even" if n % 2 == 0 else "odd"] += 1
            counters["numbers"]["total"] += n
            sums[n % 7] += n
    counters["reduce"]["keys"] = len(sums)
    counters["reduce"]["values"] = sum(counters["numbers"][k] for k in ("even", "odd"))
    output = {str(k): v for k, v in sorted(sums.items())}
    return output, {g: dict(sorted(c.items())) for g, c in sorted(counters.items())}, bad


def _run(spec: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrctl", "run", str(spec), *flags], cwd=spec.parent,
                          capture_output=True, text=True, timeout=300)


BACKENDS = ["inline", "local", pytest.param("docker", marks=pytest.mark.docker)]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_counters_and_a_skipped_bad_record_on_every_backend(tmp_path, backend, request):
    if backend == "docker":
        request.getfixturevalue("clean_docker")
    files = _inputs(tmp_path)
    out = tmp_path / "out.json"
    proc = _run(_spec(tmp_path, backend), "--json", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    output, counters, bad = _expected(tmp_path, files)
    assert bad == [("a.txt", 1)]
    assert json.loads(out.read_text()) == output
    summary = json.loads(proc.stdout)
    assert summary["counters"] == counters
    assert summary["bad_records"] == 1
    [sample] = summary["bad_record_samples"]
    assert (Path(sample["file"]).name, sample["line"]) == bad[0]
    assert sample["error"].startswith("ValueError: invalid literal for int()") and "'n'" in sample["error"]
    assert summary["failed_attempts"] == 0 and summary["failures"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inline", "local"])
def test_plain_summary_shows_counters_and_the_skipped_record(tmp_path, backend):
    _inputs(tmp_path)
    proc = _run(_spec(tmp_path, backend), "--plain", "-o", str(tmp_path / "out.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "  counters:\n    lines: a 40, b 60\n" in proc.stderr
    assert "  bad records skipped: 1, the first:\n" in proc.stderr
    assert f"    {tmp_path / 'a.txt'}, line 1: ValueError: invalid literal for int()" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inline", "local"])
def test_more_bad_records_than_max_fail_the_job(tmp_path, backend):
    _inputs(tmp_path)
    (tmp_path / "b.txt").write_text("x\n1\ny\n2\nz\n")  # three more bad records: four in all
    out = tmp_path / "out.json"
    proc = _run(_spec(tmp_path, backend), "--plain", "-o", str(out))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "records skipped, more than bad_records.max 3" in proc.stderr
    assert f"{tmp_path / 'a.txt'}, line 1: ValueError" in proc.stderr
    assert not out.exists()
    # the default policy fails the job on the first bad record, as before
    proc = _run(_spec(tmp_path, backend, bad="{policy: fail}", extra="max_attempts: 1\n"), "--plain",
                "-o", str(out))
    assert proc.returncode == 1 and "invalid literal for int()" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
def test_counters_are_exactly_once_when_attempts_die_or_fail(tmp_path):
    """m:0's first attempt kills its worker and m:1's first raises, both after counting: the
    counters equal the independent count, so neither attempt's counts were added."""
    files = _inputs(tmp_path)
    out = tmp_path / "out.json"
    proc = _run(_spec(tmp_path, "local", mapper="DyingMapper"), "--json", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    output, counters, _ = _expected(tmp_path, files)
    summary = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == output
    assert summary["counters"] == counters and summary["bad_records"] == 1
    assert summary["failed_attempts"] == 1 and summary["lost"] == 1, summary
