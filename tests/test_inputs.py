"""Issue 23, point 3: inputs as users name them. A symlink (to a file or to a directory, named
directly, inside a directory or matched by a glob) is read through to its target; a file named
twice (`x`, `./x`, a symlink to it, a directory holding it) is read once per name, as mrjob and
Hadoop read it, and the run says so; a dangling link or a link loop is refused by name.

Expected outputs are computed here in plain Python: the names an input list stands for, by the
rules mrjob's local filesystem follows (glob, then os.walk(followlinks=True) of a directory;
hidden files skipped, as mrctl documents), and what each name's file holds. `mrctl mrjob` is
compared with mrjob's own inline runner, run here beside it.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mrctl.errors import SpecError
from mrctl.spec.jobspec import Overrides, load_spec

ENV = {**os.environ, "PYTHONHASHSEED": "0"}
# what a user types: a file, the same file spelt with ./, a symlink to it, a directory holding the
# file, a symlink to it and a symlinked directory, and a glob that matches a directory
PATTERNS = ["data/x.txt", "./data/x.txt", "top.txt", "data", "./more/*"]


def _tree(root: Path) -> None:
    (root / "data").mkdir()
    (root / "more" / "inner").mkdir(parents=True)
    (root / "data" / "x.txt").write_text("the cat\nsat on\nbad\nthe mat\nend\n")
    (root / "data" / "xl.txt").symlink_to("x.txt")
    (root / "data" / "linkdir").symlink_to(Path("..") / "more")
    (root / "more" / "inner" / "y.txt").write_text("a cat\nbad\n")
    (root / "top.txt").symlink_to(Path("data") / "x.txt")


def _names(patterns: list[str], cwd: Path) -> list[str]:
    """The files each pattern names, one entry per naming, as mrjob's runners list them."""
    names = []
    for pattern in patterns:
        for match in sorted(glob.glob(pattern, root_dir=cwd)):
            if not (cwd / match).is_dir():
                names.append(match)
                continue
            for dirpath, dirs, files in os.walk(cwd / match, followlinks=True):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                shown = match + dirpath[len(str(cwd / match)):]
                names += [os.path.join(shown, f) for f in files if not f.startswith(".")]
    return names


JOB = '''
from mrctl import Mapper, Reducer


class WhereMapper(Mapper):
    def map(self, line):
        if line == "bad":
            raise ValueError("a bad line")
        yield "lines of " + self.input_path, 1
        for word in line.split():
            yield word, 1


class SumReducer(Reducer):
    def reduce(self, key, values):
        return sum(values)
'''


def _spec(root: Path, backend: str) -> Path:
    (root / "job.py").write_text(JOB)
    spec = root / "inputs.yaml"
    spec.write_text(f"name: inputs\ninput: {json.dumps(PATTERNS)}\n"
                    "job: {module: job.py, mapper: WhereMapper, reducer: SumReducer}\n"
                    f"backend: {backend}\nworkers: 2\nreducers: 3\nchunk_size: 8\n"
                    "bad_records: {policy: skip}\n")
    return spec


def _expected(root: Path, names: list[str]) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for name in names:
        for line in (root / name).read_text().splitlines():
            if line != "bad":
                counts["lines of " + name] += 1
                counts.update(line.split())
    return dict(counts)


def test_each_naming_is_an_input_read_through_its_symlinks(tmp_path):
    _tree(tmp_path)
    spec = load_spec(_spec(tmp_path, "inline"), environ={})
    names = _names(PATTERNS, tmp_path)
    assert len(names) == 7 and names.count("data/x.txt") == 2  # the file itself, and in data/
    assert sorted(spec.input_names) == sorted(names)
    assert spec.inputs == tuple((tmp_path / n).resolve() for n in spec.input_names)  # targets, read through


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inline", "local", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_file_named_twice_is_read_once_per_name_on(tmp_path, backend, request):
    """The output counts each naming's lines under its own name; the bad line is skipped once
    per naming, each at its own line of its file (chunks of 8 bytes: the second naming's line
    numbers start over); the run warns of the repeat and counts namings as input files."""
    if backend == "docker":
        request.getfixturevalue("clean_docker")
    _tree(tmp_path)
    spec = _spec(tmp_path, backend)
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, "-m", "mrctl", "run", str(spec), "--plain", "-o", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    names = _names(PATTERNS, tmp_path)
    assert json.loads(out.read_text()) == _expected(tmp_path, names)
    bad = [(str((tmp_path / n).resolve()), (tmp_path / n).read_text().splitlines().index("bad") + 1) for n in names]
    assert f"bad records skipped: {len(names)}, the first:" in done.stderr and len(names) == 7
    samples = collections.Counter((m[1], int(m[2])) for m in re.finditer(r"^    (.+), line (\d+): ", done.stderr, re.M))
    assert samples.total() == 5 and samples <= collections.Counter(bad)  # each at its own line
    x = (tmp_path / "data" / "x.txt").resolve()
    assert f"input file {x} is named 5 times (" in done.stderr
    if backend != "inline":  # the master's log line
        assert f"over {len(names)} input files" in done.stderr
    check = subprocess.run([sys.executable, "-m", "mrctl", "validate", str(spec)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and f"{len(names)} input file(s)" in check.stdout


@pytest.mark.parametrize(("make", "says", "direct", "direct_says"), [
    (lambda root: (root / "data" / "gone.txt").symlink_to("nowhere"),
     "'data/gone.txt' is a symlink to 'nowhere', which does not exist",
     "data/gone.txt", "'data/gone.txt' is a symlink to 'nowhere', which does not exist"),
    (lambda root: (root / "more" / "inner" / "up").symlink_to(".."),
     "'data/linkdir/inner/up' links back to",
     "more", "'more/inner/up' links back to"),
])
def test_a_dangling_link_or_a_loop_is_refused_by_name(tmp_path, monkeypatch, make, says, direct, direct_says):
    """Found in a directory or named directly: exit 2 naming the link (a dangling link was
    dropped without a word; a loop would read the same files again and again)."""
    _tree(tmp_path)
    make(tmp_path)
    monkeypatch.chdir(tmp_path)
    for overrides, needle in ((Overrides(), says), (Overrides(inputs=(direct,)), direct_says)):
        with pytest.raises(SpecError) as info:
            load_spec(_spec(tmp_path, "inline"), overrides, environ={})
        assert info.value.exit_code == 2 and needle in str(info.value), str(info.value)


# -- mrctl mrjob: mrjob's own inline runner is the reference ------------------------------------

WORDS = '''from mrjob.compat import jobconf_from_env
from mrjob.job import MRJob


class MRWordsByFile(MRJob):
    def mapper(self, _, line):
        for word in line.split():
            yield word, 1
        yield jobconf_from_env("mapreduce.map.input.file"), 1

    def combiner(self, key, counts):
        yield key, sum(counts)

    def reducer(self, key, counts):
        yield key, sum(counts)


if __name__ == "__main__":
    MRWordsByFile.run()
'''

RAW = '''from mrjob.job import MRJob
from mrjob.step import MRStep


class MRRawSizes(MRJob):
    def steps(self):
        return [MRStep(mapper_raw=self.sizes, reducer=self.total)]

    def sizes(self, path, uri):
        with open(path, "rb") as f:
            yield uri, len(f.read())

    def total(self, uri, sizes):
        yield uri, sum(sizes)


if __name__ == "__main__":
    MRRawSizes.run()
'''


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inline", "local"])
@pytest.mark.parametrize("script", ["words", "raw"])
def test_mrctl_mrjob_reads_inputs_as_mrjobs_inline_runner(tmp_path, backend, script):
    """Every naming read, `mapreduce.map.input.file` as typed (relative stays relative), a
    mapper_raw's uri absolute: the output lines are mrjob's, byte for byte. (mrjob gives a
    mapper_raw file paths only: its input manifest lists the paths as given, unexpanded.)"""
    _tree(tmp_path)
    (tmp_path / "data" / "x.txt").write_text("the cat\nsat on\nthe mat\n")  # no bad line here
    (tmp_path / "more" / "inner" / "y.txt").write_text("a cat\n")
    path = tmp_path / f"mr_{script}.py"
    path.write_text(WORDS if script == "words" else RAW)
    patterns = PATTERNS if script == "words" else ["data/x.txt", "./data/x.txt", "top.txt", "data/xl.txt"]
    ref = subprocess.run([sys.executable, str(path), "-r", "inline", *patterns], cwd=tmp_path,
                         capture_output=True, env=ENV, timeout=300)
    assert ref.returncode == 0, ref.stderr.decode()[-2000:]
    out = tmp_path / "out.txt"
    done = subprocess.run([sys.executable, "-m", "mrctl", "mrjob", str(path), *patterns, "-o", str(out),
                           "--plain", "--backend", backend, "--workers", "2"],
                          cwd=tmp_path, capture_output=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    expected = sorted(ref.stdout.splitlines())
    assert sorted(out.read_bytes().splitlines()) == expected
    # and the reference itself, in plain Python: the lines of each naming under its file:// name,
    # or each naming's size under its absolute path
    names = _names(patterns, tmp_path)
    got = {json.loads(k): int(v) for k, v in (line.split(b"\t") for line in expected)}
    if script == "words":
        lines = collections.Counter(f"file://{n}" for n in names for _ in (tmp_path / n).read_text().splitlines())
        assert {k: v for k, v in got.items() if k.startswith("file:")} == dict(lines)
    else:
        sizes: collections.Counter[str] = collections.Counter()
        for n in names:
            sizes[os.path.abspath(tmp_path / n)] += (tmp_path / n).stat().st_size
        assert got == dict(sizes)
