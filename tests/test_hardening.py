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


# -- 11.1 and 11.7: outputs that would destroy or re-read input; values no run can use --------

def _mrctl(*args: str, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "mrctl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def _wordcount_spec(tmp_path, extra: str = "") -> str:
    from jobs import WORDCOUNT

    (tmp_path / "wc.py").write_text(WORDCOUNT)
    (tmp_path / "wc.yaml").write_text("name: wc\ninput: indir/\n"
                                      "job: {module: wc.py, mapper: WordMapper, reducer: SumReducer}\n"
                                      "backend: inline\n" + extra)
    (tmp_path / "indir").mkdir(exist_ok=True)
    (tmp_path / "indir" / "a.txt").write_text("the cat\nthe hat\n")
    return str(tmp_path / "wc.yaml")


@pytest.mark.parametrize("args,needle", [
    (["-i", "victim.txt", "-o", "victim.txt"], "is also an input file"),
    (["-i", "indir", "-o", "indir/out.json"], "is inside the input directory"),
    (["-i", "indir/*.txt", "-o", "indir/out.txt"], "matches the input pattern"),
    (["-o", "indir"], "is a directory"),
    (["-o", "victim.txt/out.json"], "is a file, not a directory"),
    (["--workers", "1000000"], "--workers: 1000000 is more than 256"),
    (["--reducers", str(10**9)], "--reducers: 1000000000 is more than 10000"),
    (["--task-timeout", "nan"], "finite number of seconds"),
    (["--task-timeout", "inf"], "finite number of seconds"),
    (["--redis-memory", "0"], "0, Redis's 'unlimited', is refused"),
])
def test_unusable_settings_are_refused_before_any_work_and_input_is_untouched(tmp_path, args, needle):
    spec = _wordcount_spec(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious words\n")
    proc = _mrctl("run", spec, *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert victim.read_text() == "precious words\n"
    assert sorted(p.name for p in (tmp_path / "indir").iterdir()) == ["a.txt"]


def test_spec_values_out_of_bounds_name_file_and_line(tmp_path):
    for extra, needle in [("task_timeout: .nan\n", "wc.yaml:5: task_timeout: expected a finite number"),
                          ("reducers: 1000000000\n", "wc.yaml:5: reducers: 1000000000 is more than 10000")]:
        proc = _mrctl("validate", _wordcount_spec(tmp_path, extra), cwd=tmp_path)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr


def test_a_hidden_output_inside_an_input_directory_is_allowed_and_not_read_back(tmp_path):
    spec = _wordcount_spec(tmp_path)
    for _ in range(2):
        proc = _mrctl("run", spec, "-o", "indir/.counts.json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads((tmp_path / "indir" / ".counts.json").read_text()) == {"cat": 1, "hat": 1, "the": 2}
