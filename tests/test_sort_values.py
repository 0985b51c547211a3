"""Issue 12, item 6 (part): `sort_values: true` gives each key's values to the reducer sorted
(a secondary sort), the same on every backend; the expected output is computed here in plain
Python."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import defaultdict

import pytest

from mrctl.io import codec

JOB = '''
from mrctl import Mapper, Reducer


class VisitMapper(Mapper):
    """`user time page` lines: the visits of each user as (time, page)."""

    def map(self, line):
        user, time, page = line.split()
        yield user, (int(time), page)


class PathReducer(Reducer):
    def reduce(self, key, values):
        return [page for _, page in values]
'''


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inline", "local", pytest.param("docker", marks=pytest.mark.docker)])
def test_sorted_values_arrive_in_order_on_every_backend(tmp_path, backend, request):
    if backend == "docker":
        request.getfixturevalue("clean_docker")
    (tmp_path / "job.py").write_text(JOB)
    rng = random.Random(12)
    lines = [f"u{rng.randrange(5)} {rng.randrange(100)} p{i}" for i in range(60)]  # 9 before 10
    (tmp_path / "visits.txt").write_text("\n".join(lines) + "\n")
    spec = tmp_path / "paths.yaml"
    spec.write_text("name: paths\ninput: visits.txt\njob: {module: job.py, mapper: VisitMapper, "
                    f"reducer: PathReducer}}\nsort_values: true\nbackend: {backend}\nreducers: 3\n"
                    "chunk_size: 64\nworkers: 2\n")
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "mrctl", "run", str(spec), "--plain", "-o", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    visits = defaultdict(list)
    for line in lines:
        user, time, page = line.split()
        visits[user].append((int(time), page))
    expected = {user: [page for _, page in sorted(v)] for user, v in sorted(visits.items())}
    assert any(sorted(v) != v for v in visits.values())  # input order would not pass
    assert json.loads(out.read_text()) == expected


def test_value_order_compares_sequences_element_by_element():
    values = [(10, "a"), (9, "z"), None, "b", 2.5, True, 2, [1, [2, 3]], [1, [2, 10]], {"a": 1}, (9, "a")]
    got = sorted(values, key=codec.value_sort_key)
    assert got == [None, True, 2, 2.5, "b", [1, [2, 3]], [1, [2, 10]], (9, "a"), (9, "z"), (10, "a"),
                   {"a": 1}]
