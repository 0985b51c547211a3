"""Issue 11's hardening, end to end: each test failed before its fix.

Expected outputs come from plain-Python computations written here, never from mrctl."""

from __future__ import annotations

import collections
import json

import pytest
from jobs import make_spec

from mrctl.errors import JobFailed
from mrctl.runner import run_job

MIXED = '''
from mrctl import Mapper, Reducer

KEYS = {"i": 1, "f": 1.0, "b": True, "s": "1", "z": 0, "zf": -0.0, "n": None, "l": ["1"], "t": [True]}


class MixedMapper(Mapper):
    def map(self, line):
        yield KEYS[line], 1


class SumReducer(Reducer):
    def reduce(self, key, values):
        return sum(values)
'''
LETTERS = ["i", "f", "b", "s", "z", "zf", "n", "l", "t"]


def _mixed_input(tmp_path):
    lines = [LETTERS[(i * 7) % len(LETTERS)] for i in range(120)]
    path = tmp_path / "mixed.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, lines


@pytest.mark.parametrize("backend,reducers,chunk_size", [
    ("inline", 1, 1 << 20), ("local", 3, 8), ("local", 1, 64), ("local", 4, 1 << 20)])
def test_keys_of_mixed_types_never_merge_whatever_r_chunk_size_and_backend(tmp_path, backend, reducers,
                                                                         chunk_size):
    path, lines = _mixed_input(tmp_path)
    values = {"i": 1, "f": 1.0, "b": True, "s": "1", "z": 0, "zf": -0.0, "n": None, "l": ("1",), "t": (True,)}
    expected = sorted((t.__name__, r, n) for (t, r), n in collections.Counter(
        (type(values[x]), repr(values[x])) for x in lines).items())
    spec = make_spec(tmp_path, MIXED, [path], mapper="MixedMapper", combiner="SumReducer",
                     output="out.jsonl", backend=backend, reducers=reducers, chunk_size=chunk_size, workers=2)
    run_job(spec)
    rows = [json.loads(line) for line in spec.output_path.read_text().splitlines()]
    got = sorted((type(r["key"]).__name__ if not isinstance(r["key"], list) else "tuple",
                  repr(tuple(r["key"]) if isinstance(r["key"], list) else r["key"]), r["value"]) for r in rows)
    assert got == expected and len(got) == len(LETTERS)


def test_json_output_refuses_keys_that_would_collide_and_writes_nothing(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("i\ns\ni\n")
    spec = make_spec(tmp_path, MIXED, [path], mapper="MixedMapper", output="out.json", backend="inline")
    with pytest.raises(JobFailed) as info:
        run_job(spec)
    message = str(info.value)
    assert "1 (int)" in message and "'1' (str)" in message and "jsonl" in message
    assert info.value.exit_code == 1 and not spec.output_path.exists()
