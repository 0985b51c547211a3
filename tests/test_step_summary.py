"""One summary for every backend (issue 23, point 8): a two-step job's summary shows each step's
map and reduce tasks and bytes, the same on inline, local and docker. Expected counts are
computed here from the input and the spec: map tasks of step 1 = the input's chunks, of step 2
= step 1's reduce partitions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from procs import run_mrctl

JOB = '''from mrctl import Mapper, Reducer


class Words(Mapper):
    def map(self, line):
        for word in line.split():
            yield word, 1


class Sum(Reducer):
    def reduce(self, key, values):
        return sum(values)


class ByCount(Mapper):
    def map(self, word, n):
        yield n, word


class Sorted(Reducer):
    def reduce(self, n, words):
        yield n, sorted(words)
'''

LINE = 20  # bytes per input line, newline included
CHUNK = 5 * LINE  # a chunk is exactly 5 lines: chunks cut after the line that reaches chunk_size
FILE_LINES = (23, 40, 7)
REDUCERS = (3, 2)  # step 1 (count), step 2 (by_count)


def _spec(tmp_path: Path) -> Path:
    inputs = []
    for f, count in enumerate(FILE_LINES):
        path = tmp_path / f"in{f}.txt"
        path.write_text("".join(f"w{(f * 7 + i) % 11:02d} f{f} line {i:05d} z\n" for i in range(count)))
        assert {len(line) for line in path.read_text().splitlines(keepends=True)} == {LINE}
        inputs.append(path)
    (tmp_path / "job.py").write_text(JOB)
    spec = tmp_path / "two.yaml"
    spec.write_text(f"name: two\ninput: [{', '.join(str(p) for p in inputs)}]\nmodule: job.py\n"
                    f"output: out.json\nchunk_size: {CHUNK}\nworkers: 2\nsteps:\n"
                    f"  - {{name: count, mapper: Words, reducer: Sum, reducers: {REDUCERS[0]}}}\n"
                    f"  - {{name: by_count, mapper: ByCount, reducer: Sorted, reducers: {REDUCERS[1]}}}\n")
    return spec


def _kb(n: int) -> str:
    return f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n} B"


def _expected_step1() -> str:
    chunks = sum(-(-lines // 5) for lines in FILE_LINES)  # ceil: 5 lines a chunk
    size = LINE * sum(FILE_LINES)
    return f"    count: map tasks {chunks}/{chunks} ({_kb(size)}), reduce tasks {REDUCERS[0]}/{REDUCERS[0]}"


STEP2 = re.compile(rf"    by_count: map tasks {REDUCERS[0]}/{REDUCERS[0]} \((\d+ B|\d+\.\d kB)\), "
                   rf"reduce tasks {REDUCERS[1]}/{REDUCERS[1]}$")


def _summary(tmp_path: Path, backend: str) -> tuple[list[str], dict]:
    """The per-step lines of the text summary (and the line before them), and the --json one."""
    spec = _spec(tmp_path)
    text = run_mrctl("run", spec, "--backend", backend).stderr.splitlines()
    at = next(i for i, line in enumerate(text) if line.startswith("    count: "))
    data = json.loads(run_mrctl("run", spec, "--backend", backend, "--json").stdout)
    return text[at - 1:at + 2], data


def _check(lines: list[str], data: dict) -> None:
    total, first, second = lines
    assert first == _expected_step1()
    assert STEP2.match(second), second
    chunks = sum(-(-n // 5) for n in FILE_LINES)
    assert total.startswith(f"  map tasks {chunks + REDUCERS[0]}/{chunks + REDUCERS[0]} (")
    assert total.endswith(f"reduce tasks {sum(REDUCERS)}/{sum(REDUCERS)}")
    steps = data["step_tasks"]
    assert [(s["name"], s["map"]["total"], s["map"]["done"], s["reduce"]["total"], s["reduce"]["done"])
            for s in steps] == [("count", chunks, chunks, REDUCERS[0], REDUCERS[0]),
                                ("by_count", REDUCERS[0], REDUCERS[0], REDUCERS[1], REDUCERS[1])]
    assert steps[0]["map"]["bytes"] == LINE * sum(FILE_LINES)
    assert data["map"] == {"done": chunks + REDUCERS[0], "total": chunks + REDUCERS[0],
                           "bytes": steps[0]["map"]["bytes"] + steps[1]["map"]["bytes"]}


@pytest.mark.slow
def test_inline_and_local_show_the_same_steps(tmp_path):
    """Before: local showed the last step's tasks (map 3/3, reduce 2/2), inline the first
    step's maps with the last step's reducers (map 15/15, reduce 2/2), and no step's own."""
    (tmp_path / "inline").mkdir()
    (tmp_path / "local").mkdir()
    inline = _summary(tmp_path / "inline", "inline")
    local = _summary(tmp_path / "local", "local")
    _check(*inline)
    _check(*local)
    assert inline[0] == local[0]  # step 2's bytes too: the same blobs on both
    assert inline[1]["step_tasks"] == local[1]["step_tasks"]


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
def test_docker_shows_the_steps_as_inline_does(tmp_path):
    (tmp_path / "inline").mkdir()
    (tmp_path / "docker").mkdir()
    inline = _summary(tmp_path / "inline", "inline")
    docker = _summary(tmp_path / "docker", "docker")
    _check(*docker)
    assert docker[0] == inline[0]
    assert docker[1]["step_tasks"] == inline[1]["step_tasks"]
