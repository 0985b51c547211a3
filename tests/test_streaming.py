"""Streaming jobs (Hadoop Streaming's contract): commands as mapper, combiner and reducer, named
in the spec, on every backend, against plain-Python counts of the same inputs."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, computed_once, corpus_files

from mrctl.errors import JobFailed
from mrctl.master.chaos import ChaosPlan
from mrctl.master.driver import RunOptions, run_job
from mrctl.spec.jobspec import Overrides, load_spec

TEXTS = sorted((ROOT / "jobspecs" / "data").glob("*.txt"))
BACKENDS = ["inline", "local", pytest.param("docker", marks=pytest.mark.docker)]
# words: runs of ASCII letters, as awk's [A-Za-z] and the reference's regex both read bytes
MAP = "awk '{ gsub(/[^A-Za-z]+/, \" \"); for (i = 1; i <= NF; i++) print $i \"\\t1\" }'"
SUM = "awk -F'\\t' '{ n[$1] += $2 } END { for (w in n) print w \"\\t\" n[w] }'"


def word_counts(paths: list[Path], lower: bool = False) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for path in paths:
        data = path.read_bytes()
        counts.update(w.decode() for w in re.findall(rb"[A-Za-z]+", data.lower() if lower else data))
    return dict(counts)


def line_count(paths: list[Path]) -> int:
    """Lines as awk counts them (a last line without its newline is one)."""
    total = 0
    for path in paths:
        data = path.read_bytes()
        total += data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return total


def write_spec(tmp_path: Path, body: str, inputs: list[Path], name: str = "streaming") -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(f"name: {name}\ninput: {json.dumps([str(p) for p in inputs])}\n{body}")
    return spec


def text_pairs(path: Path) -> dict[str, int]:
    pairs = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    assert len({k for k, _ in pairs}) == len(pairs), "a key written twice"
    return {k: int(v) for k, v in pairs}


def _job(mapper: str = MAP, reducer: str = SUM, combiner: str | None = SUM) -> str:
    lines = ["job:", f"  mapper_cmd: {json.dumps(mapper)}", f"  reducer_cmd: {json.dumps(reducer)}"]
    if combiner:
        lines.append(f"  combiner_cmd: {json.dumps(combiner)}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_streaming_example_equals_a_plain_count_on_every_backend(tmp_path, backend, request):
    """jobspecs/wordcount_streaming.yaml (awk mapper, combiner and reducer) over its samples and
    a book in 64 KiB chunks: each word's count, as a plain loop counts lowercased a-z runs."""
    if backend == "docker":
        request.getfixturevalue("clean_docker")
    inputs = [*TEXTS, corpus_files()[0]]
    spec = load_spec(ROOT / "jobspecs" / "wordcount_streaming.yaml", Overrides(
        inputs=tuple(map(str, inputs)), output=str(tmp_path / "out.txt"), backend=backend, workers=2,
        reducers=3, chunk_size="64KiB"))
    assert spec.output_format == "text"
    final = run_job(spec)
    assert final.status == "succeeded"
    assert text_pairs(tmp_path / "out.txt") == word_counts(inputs, lower=True)


def _rust_mapper() -> bytes:
    """jobspecs/rust_wordcount, built once per test run by cargo: a static binary (offline: it has
    no dependencies)."""
    def build() -> bytes:
        with tempfile.TemporaryDirectory(prefix="mrctl-cargo-") as target:
            env = {**os.environ, "RUSTFLAGS": "-C target-feature=+crt-static", "CARGO_TARGET_DIR": target}
            command = ["cargo", "build", "--release", "--offline", "--manifest-path",
                       str(ROOT / "jobspecs" / "rust_wordcount" / "Cargo.toml")]
            try:
                done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            except FileNotFoundError:
                pytest.fail("these tests build a Rust program and cargo is not installed (https://rustup.rs); "
                            "deselect them with -m 'not cargo'")
            assert done.returncode == 0, done.stderr[-3000:]
            return (Path(target) / "release" / "wc_mapper").read_bytes()
    source = (ROOT / "jobspecs" / "rust_wordcount" / "src" / "main.rs").read_text()
    return computed_once("jobspecs/rust_wordcount " + source, build)


@pytest.mark.cargo
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_rust_mapper_example_equals_a_plain_count(tmp_path, backend, request):
    """jobspecs/wordcount_rust.yaml: a mapper written in Rust, built by cargo and shipped with
    files:, beside an awk reducer; the same counts as the plain loop, and its counter of words."""
    if backend == "docker":
        request.getfixturevalue("clean_docker")
    binary = tmp_path / "rust_wordcount" / "target" / "release" / "wc_mapper"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(_rust_mapper())
    shutil.copy(ROOT / "jobspecs" / "wordcount_rust.yaml", tmp_path / "wordcount_rust.yaml")
    inputs = [*TEXTS, corpus_files()[0]]
    spec = load_spec(tmp_path / "wordcount_rust.yaml", Overrides(
        inputs=tuple(map(str, inputs)), output=str(tmp_path / "out.txt"), backend=backend, workers=2,
        reducers=3, chunk_size="64KiB"))
    final = run_job(spec)
    expected = word_counts(inputs, lower=True)
    assert text_pairs(tmp_path / "out.txt") == expected
    assert ("wc_mapper", "words", sum(expected.values())) in final.counters, final.counters


COUNTING_MAPPER = """#!/bin/sh
# a shipped script: the words of its lines, and how many lines it read, as a counter
sleep 0.3
exec awk '{ gsub(/[^A-Za-z]+/, " "); for (i = 1; i <= NF; i++) print $i "\\t1" }
          END { print "reporter:counter:stream,lines," NR > "/dev/stderr"
                print "reporter:status:mapped " NR " lines" > "/dev/stderr" }'
"""


@pytest.mark.slow
def test_shipped_script_counters_are_exactly_once_while_chaos_kills_workers(tmp_path):
    """A mapper script shipped with files:, on 3 local workers of which chaos kills 2 mid-job:
    the output is exact, and the script's counter (reporter: lines on stderr) counts each
    input line once, however many attempts ran."""
    (tmp_path / "count_words.sh").write_text(COUNTING_MAPPER)
    inputs = corpus_files()[:2]
    body = _job(mapper="./count_words.sh") + "files: [count_words.sh]\nbackend: local\nworkers: 3\n" \
        "reducers: 3\nchunk_size: 32KiB\n"
    spec = load_spec(write_spec(tmp_path, body, inputs), Overrides(output=str(tmp_path / "out.txt")))
    final = run_job(spec, RunOptions(chaos=ChaosPlan(kills=2, every_s=0.3, seed=3)))
    assert text_pairs(tmp_path / "out.txt") == word_counts(inputs)
    assert final.killed == 2 and final.lost + final.retries >= 2
    assert ("stream", "lines", line_count(inputs)) in final.counters, final.counters


def test_two_streaming_steps_and_a_map_only_filter(tmp_path):
    """steps: a count, then a map-only step whose awk keeps the words seen at least 50 times."""
    inputs = corpus_files()[:1]
    body = ("steps:\n"
            f"  - {{name: count, mapper_cmd: {json.dumps(MAP)}, reducer_cmd: {json.dumps(SUM)}, reducers: 2}}\n"
            "  - {name: common, mapper_cmd: \"awk -F'\\\\t' '$2 >= 50'\", reducers: 0}\n"
            "backend: inline\n")
    spec = load_spec(write_spec(tmp_path, body, inputs), Overrides(output=str(tmp_path / "out.txt")))
    run_job(spec)
    assert text_pairs(tmp_path / "out.txt") == {w: n for w, n in word_counts(inputs).items() if n >= 50}


def _cli(spec: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrctl", "run", str(spec), "--plain", *args],
                          capture_output=True, text=True, timeout=120, cwd=spec.parent)


@pytest.mark.slow
@pytest.mark.parametrize(("mapper", "says"), [
    ("sh -c 'echo broken >&2; exit 3'", "mapper_cmd \"sh -c 'echo broken >&2; exit 3'\" exited with status 3; "
                                        "its stderr ends: broken"),
    ("no-such-program-here", "cannot run no-such-program-here: No such file or directory"),
    ("printf 'caf\\351\\t1\\n'", "output line 1 is not UTF-8 text"),
])
def test_a_failing_command_fails_the_job_with_what_it_said(tmp_path, mapper, says):
    spec = write_spec(tmp_path, _job(mapper=mapper, combiner=None) + "backend: local\nmax_attempts: 2\n", TEXTS[:1])
    done = _cli(spec, "-o", str(tmp_path / "out.txt"))
    assert done.returncode == 1, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr.split("worker traceback")[0]
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize(("body", "says"), [
    ("job: {mapper_cmd: \"awk '{print\", reducer_cmd: cat}\n", "job.mapper_cmd: cannot split"),
    ("job: {module: x.py, mapper_cmd: cat}\n", "job.module: a streaming step gives commands"),
    ("job: {reducer_cmd: cat}\n", "job.mapper_cmd: missing"),
    ("job: {mapper_cmd: cat, reducer_cmd: cat}\nfiles: [nowhere.sh]\n", "files: no such file"),
    ("job: {mapper_cmd: '  ', reducer_cmd: cat}\n", "job.mapper_cmd: expected a command line"),
])
def test_streaming_spec_errors_say_what_and_where(tmp_path, body, says):
    spec = write_spec(tmp_path, body, TEXTS[:1])
    done = _cli(spec)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "streaming.yaml:" in done.stderr and "Traceback" not in done.stderr


def test_files_without_a_streaming_step_is_refused(tmp_path):
    (tmp_path / "job.py").write_text("from mrctl import Mapper\n\nclass M(Mapper):\n    def map(self, line):\n"
                                     "        yield line, 1\n")
    (tmp_path / "data.txt").write_text("x\n")
    spec = write_spec(tmp_path, "job: {module: job.py, mapper: M}\nreducers: 0\nfiles: [data.txt]\n", TEXTS[:1])
    done = _cli(spec)
    assert done.returncode == 2 and "files: ships files beside streaming commands" in done.stderr, done.stderr


EMIT = """#!/bin/sh
printf 'last\\tx\\\\y\\tz\\r\\n'
echo 'reporter:counter:a:b,emitted,+5' >&2
echo 'reporter:counter:a,bad,--5' >&2
"""


def test_output_lines_are_written_as_the_command_wrote_them(tmp_path):
    """Hadoop's text output: key<TAB>value with the value's own tabs and backslashes kept (a
    \\r\\n line end read as the line's end); counter lines as Hadoop reads them (a group with
    ':' and a '+5'), one that is no counter left in the log; .json still gives JSON."""
    (tmp_path / "emit.sh").write_text(EMIT)
    body = "job: {mapper_cmd: ./emit.sh}\nfiles: [emit.sh]\nreducers: 0\nbackend: inline\nchunk_size: 1MiB\n"
    spec = load_spec(write_spec(tmp_path, body, TEXTS[:1]), Overrides(output=str(tmp_path / "out.txt")))
    final = run_job(spec)
    assert (tmp_path / "out.txt").read_bytes() == b"last\tx\\y\tz\n"
    assert final.counters == (("a;b", "emitted", 5),)
    spec = load_spec(write_spec(tmp_path, body, TEXTS[:1]), Overrides(output=str(tmp_path / "out.jsonl")))
    run_job(spec)
    assert json.loads((tmp_path / "out.jsonl").read_text()) == {"key": "last", "value": "x\\y\tz"}


NUMBERS = """from mrctl import Mapper


class Numbers(Mapper):
    def map(self, line):
        for key in (10, 1, 9, "1", 2, 1):
            yield key, "x"
"""
# a reducer that counts each run of lines with the same key: a key seen twice means its lines
# did not come together
RUNS = ("awk -F'\\t' '$1 != prev { if (NR > 1) print prev \"\\t\" c; prev = $1; c = 0 } { c++ } "
        "END { print prev \"\\t\" c }'")


def test_a_streaming_reducer_gets_keys_in_text_order_after_a_python_step(tmp_path):
    """A Python step's int keys (and a str "1") reach a streaming reducer sorted as text, each
    key's lines together, as Hadoop's Text keys would."""
    (tmp_path / "numbers.py").write_text(NUMBERS)
    (tmp_path / "one.txt").write_text("one line\n")
    body = ("steps:\n  - {name: numbers, module: numbers.py, mapper: Numbers, reducers: 0}\n"
            f"  - {{name: runs, reducer_cmd: {json.dumps(RUNS)}, reducers: 1}}\nbackend: inline\n")
    spec = load_spec(write_spec(tmp_path, body, [tmp_path / "one.txt"]), Overrides(output=str(tmp_path / "out.txt")))
    run_job(spec)
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert lines == ["1\t3", "10\t1", "2\t1", "9\t1"]


BROKEN = """from mrctl import Mapper


class Multi(Mapper):
    def map(self, line):
        yield "multi", "x\\ny"
"""


def test_a_record_with_a_line_break_fails_the_task_instead_of_becoming_two(tmp_path):
    (tmp_path / "multi.py").write_text(BROKEN)
    body = ("steps:\n  - {name: multi, module: multi.py, mapper: Multi, reducers: 0}\n"
            "  - {name: cat, mapper_cmd: cat, reducers: 0}\nbackend: inline\nmax_attempts: 1\n")
    spec = load_spec(write_spec(tmp_path, body, TEXTS[:1]), Overrides(output=str(tmp_path / "out.txt")))
    with pytest.raises(JobFailed, match="holds a line break, or a tab in its key"):
        run_job(spec)
    assert not (tmp_path / "out.txt").exists()


def test_text_output_refuses_a_pair_it_could_not_give_back(tmp_path):
    """The text format writes pairs as they are, so a key with a tab or a line break anywhere
    would read back as other pairs: refused, and nothing is written."""
    from mrctl.errors import SpecError
    from mrctl.io.output import read_output, write_output

    good = [("a", "b\tc\\d"), ("e", ""), ("f", 3)]
    write_output(tmp_path / "ok.txt", good, "text")
    assert list(read_output(tmp_path / "ok.txt", "text")) == [("a", "b\tc\\d"), ("e", ""), ("f", "3")]
    for pair, says in ((("a\tb", "x"), "a tab"), (("a", "x\ny"), "a line break"), (("a\r", "x"), "a line break")):
        with pytest.raises(SpecError, match=says):
            write_output(tmp_path / "bad.txt", [pair], "text")
        assert not (tmp_path / "bad.txt").exists()


def test_shipped_files_land_in_a_private_directory_of_the_process(tmp_path, monkeypatch):
    """Unpacked once per process into a fresh 0700 directory (a name nobody could make first in
    a shared /tmp), executable, reused by every task, and removed by remove_made."""
    import stat

    from mrctl.io import shipped

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    packed = shipped.pack_files({"tool.sh": tmp_path / "tool.sh"}, {}, "test")
    first = shipped.shipped_dir(packed, "mrctl-streaming", executable=True)
    assert shipped.shipped_dir(packed, "mrctl-streaming", executable=True) == first
    assert stat.S_IMODE(first.stat().st_mode) == 0o700 and first.parent == tmp_path
    assert subprocess.run(["./tool.sh"], cwd=first, capture_output=True, text=True).stdout == "hi\n"
    shipped.remove_made()
    assert not first.exists()
