"""Issue 12's log study, as a test on every backend: apt's history.log (multi-line records at a
4 KiB chunk size) joined by tag with a gzip-rotated dpkg.log, counted per action. The real logs
of this machine when present (a stand-in built from `dpkg-query` otherwise); expected counts
from a plain-Python parse written here."""

from __future__ import annotations

import collections
import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

JOB = '''
import re
from mrctl import Mapper, Reducer

ACTION = re.compile(r"^(Install|Upgrade|Remove|Purge|Reinstall|Downgrade): (.*)$", re.M)
PACKAGE = re.compile(r"([^\\s,()]+:[a-z0-9]+) \\(")


class LogMapper(Mapper):
    def map(self, record):
        if self.input_tag == "apt":  # one Start-Date ... End-Date record
            for action, packages in ACTION.findall(record):
                for _ in PACKAGE.findall(packages):
                    yield ["apt", action.lower()], 1
        else:  # one dpkg.log line: date time action ...
            fields = record.split()
            if len(fields) >= 3:
                yield ["dpkg", fields[2]], 1


class SumReducer(Reducer):
    def reduce(self, key, values):
        return sum(values)
'''


def _logs(tmp_path: Path) -> tuple[Path, Path]:
    history, dpkg = Path("/var/log/apt/history.log"), Path("/var/log/dpkg.log")
    apt_copy, dpkg_copy = tmp_path / "history.log", tmp_path / "dpkg.log.1.gz"
    if history.is_file() and dpkg.is_file() and history.stat().st_size > 8192:
        shutil.copy(history, apt_copy)
        text = dpkg.read_bytes()
    else:  # a machine without apt history: the same shapes, from the installed packages
        rows = subprocess.run(["dpkg-query", "-W", "-f", "${Package}:${Architecture} ${Version}\\n"],
                              capture_output=True, text=True, check=True).stdout.split("\n")[:400]
        pkgs = [r.split() for r in rows if r]
        apt_copy.write_text("".join(
            f"\nStart-Date: 2026-01-01  00:00:{i:02d}\nCommandline: apt-get install x\n"
            f"Install: {', '.join(f'{p} ({v})' for p, v in pkgs[i * 20:(i + 1) * 20])}\n"
            "End-Date: 2026-01-01  00:00:59\n" for i in range(len(pkgs) // 20)))
        text = "".join(f"2026-01-01 00:00:00 status installed {p} {v}\n" for p, v in pkgs).encode()
    with gzip.open(dpkg_copy, "wb") as f:
        f.write(text)
    return apt_copy, dpkg_copy


def _expected(apt: Path, dpkg: Path) -> str:
    counts: collections.Counter = collections.Counter()
    for record in apt.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        for line in record.splitlines():
            m = re.match(r"^(Install|Upgrade|Remove|Purge|Reinstall|Downgrade): (.*)$", line)
            if m:
                counts[("apt", m.group(1).lower())] += len(re.findall(r"([^\s,()]+:[a-z0-9]+) \(", m.group(2)))
    for line in gzip.open(dpkg, "rt", encoding="utf-8", errors="replace"):
        fields = line.split()
        if len(fields) >= 3:
            counts[("dpkg", fields[2])] += 1
    return "".join(json.dumps({"key": list(k), "value": v}) + "\n" for k, v in sorted(counts.items()))


@pytest.mark.slow
@pytest.mark.parametrize("backend,reducers", [
    ("inline", 1), ("local", 3), pytest.param("docker", 2, marks=pytest.mark.docker)])
def test_apt_and_dpkg_logs_counted_per_action_on_every_backend(tmp_path, backend, reducers, request):
    if backend == "docker":
        request.getfixturevalue("clean_docker")
    apt, dpkg = _logs(tmp_path)
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "logs.yaml").write_text(
        "name: logs\ninput:\n"
        f"  - {{path: {apt.name}, tag: apt, format: {{records: \"\\n\\n\"}}}}\n"
        f"  - {{path: {dpkg.name}, tag: dpkg}}\n"
        "job: {module: job.py, mapper: LogMapper, reducer: SumReducer, combiner: SumReducer}\n"
        f"backend: {backend}\nworkers: 2\nreducers: {reducers}\nchunk_size: 4KiB\n")
    proc = subprocess.run([sys.executable, "-m", "mrctl", "run", "logs.yaml", "--json", "-o", "out.jsonl"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out.jsonl").read_text() == _expected(apt, dpkg)
    summary = json.loads(proc.stdout)
    assert summary["map"]["total"] > 3  # the history log was cut into several 4 KiB tasks
