"""Issue 12, item 8: what the job's code prints or logs in a worker is visible on every backend
(`--worker-output`), prefixed with the worker and the task; without the flag, nothing extra."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

CHATTY = '''
import logging
from mrctl import Mapper, Reducer

log = logging.getLogger("chatty")


class ChattyMapper(Mapper):
    def map(self, line):
        print("saw", line.split()[0], "in", self.input_path)
        yield line.split()[0], 1

    def teardown(self):
        log.warning("mapper %s done", self.task_id)


class SumReducer(Reducer):
    def reduce(self, key, values):
        print("reducing", key)
        return sum(values)
'''


def _run(tmp_path, backend: str, *flags: str) -> subprocess.CompletedProcess:
    (tmp_path / "job.py").write_text(CHATTY)
    (tmp_path / "in.txt").write_text("alpha one\nbeta two\nalpha three\n")
    (tmp_path / "job.yaml").write_text("name: chatty\ninput: in.txt\n"
                                       "job: {module: job.py, mapper: ChattyMapper, reducer: SumReducer}\n"
                                       f"backend: {backend}\nworkers: 1\nreducers: 1\n")
    return subprocess.run([sys.executable, "-m", "mrctl", "run", "job.yaml", "--plain", *flags], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_prints_and_logs_of_job_code_reach_the_terminal(tmp_path, backend, request):
    if backend == "docker":
        request.getfixturevalue("clean_docker")
    proc = _run(tmp_path, backend, "--worker-output")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for word in ("alpha", "beta", "alpha"):
        assert re.search(rf"\[worker-\d+ m:0\] saw {word} in in\.txt", proc.stderr), proc.stderr
    assert len(re.findall(r"\] saw alpha in in\.txt", proc.stderr)) == 2
    assert re.search(r"\[worker-\d+ m:0\] WARNING chatty: mapper m:0 done", proc.stderr)
    assert re.search(r"\[worker-\d+ r:0\] reducing alpha", proc.stderr)
    quiet = _run(tmp_path, backend)
    assert quiet.returncode == 0 and "saw alpha" not in quiet.stderr + quiet.stdout


def test_inline_prints_go_straight_through(tmp_path):
    proc = _run(tmp_path, "inline", "--worker-output")
    assert proc.returncode == 0 and proc.stdout.count("saw alpha in in.txt") == 2
