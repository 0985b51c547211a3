"""Job specs: every user mistake is a SpecError (exit 2) naming file, key, line, expectation."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from mrctl.errors import SpecError
from mrctl.spec.bad_records import BadRecordPolicy
from mrctl.spec.jobspec import Overrides, WorkerLimits, load_spec
from mrctl.spec.placement import Placement

MODULE = """
from mrctl import Mapper, Reducer
class M(Mapper):
    def map(self, line):
        yield line, 1
class R(Reducer):
    def reduce(self, key, values):
        return sum(values)
"""

GOOD = """\
name: demo
input: data/
job:
  module: job.py
  mapper: M
  reducer: R
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "b.txt").write_text("b\n")
    (tmp_path / "data" / "sub" / "a.txt").write_text("a\n")
    (tmp_path / "data" / ".hidden").write_text("h\n")
    (tmp_path / "job.py").write_text(MODULE)
    return tmp_path


def write(project: Path, text: str) -> Path:
    path = project / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path, **kw) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path, **kw)
    assert info.value.exit_code == 2
    return str(info.value)


def test_good_spec_defaults_and_paths(project, monkeypatch):
    monkeypatch.chdir(project)
    spec = load_spec(write(project, GOOD), environ={})
    assert spec.inputs == (project / "data" / "b.txt", project / "data" / "sub" / "a.txt")
    assert spec.module == project / "job.py" and spec.combiner is None
    assert (spec.reducers, spec.chunk_size, spec.workers, spec.max_attempts) == (4, 4 << 20, 2, 4)
    assert spec.output_path == project / "demo.json" and spec.output_format == "json"
    assert spec.backend == "docker" and spec.encoding_errors == "replace"
    assert spec.bad_records == BadRecordPolicy("fail", None)
    skip = load_spec(write(project, GOOD + "bad_records: {policy: skip, max: 2}\n"), environ={})
    assert skip.bad_records == BadRecordPolicy("skip", 2) and skip.bad_records.exceeded(3)
    assert not skip.bad_records.exceeded(2)


def test_workers_mapping_sizes_and_output(project):
    extra = "workers: {count: 3, cpus: 1.5, memory: 512m, pids: 128}\nchunk_size: 64KiB\n" \
            "output: {path: out/result.tsv}\n"
    spec = load_spec(write(project, GOOD + extra), environ={})
    assert spec.workers == 3 and spec.limits == WorkerLimits(1.5, "512m", 128)
    assert spec.chunk_size == 65536
    assert spec.output_path == project / "out" / "result.tsv" and spec.output_format == "tsv"


def test_workers_placement_reads_as_docker_compose_deploy_placement(project):
    extra = textwrap.dedent("""\
        workers:
          count: 4
          placement:
            constraints: [node.role==worker, "node.labels.disk != hdd", engine.labels.gen==2]
            preferences: [{spread: node.labels.zone}, {spread: node.labels.rack}]
            max_replicas_per_node: 2
        """)
    spec = load_spec(write(project, GOOD + extra), environ={})
    assert spec.workers == 4 and spec.limits == WorkerLimits()
    assert spec.placement == Placement(("node.role==worker", "node.labels.disk!=hdd", "engine.labels.gen==2"),
                                       ("node.labels.zone", "node.labels.rack"), 2)
    assert spec.placement.describe() == ("constraints node.role==worker, node.labels.disk!=hdd, engine.labels.gen==2; "
                                         "spread over node.labels.zone; spread over node.labels.rack; at most 2 a node")
    assert not load_spec(write(project, GOOD + "workers: {count: 2}\n"), environ={}).placement


@pytest.mark.parametrize("placement,expected", [
    ("{constraints: [node.role=manager]}", ["spec.yaml:7", "workers.placement.constraints: item 1",
                                           "ATTRIBUTE==VALUE", "'node.role=manager'"]),
    ("{constraints: [node.role==manager, role==worker]}", ["item 2", "'role==worker'"]),
    ("{constraints: node.role==manager}", ["workers.placement.constraints: expected a list"]),
    ("{preferences: [{spread: zone}]}", ["workers.placement.preferences: item 1", "{spread: node.labels.NAME}"]),
    ("{preferences: [{binpack: node.labels.zone}]}", ["item 1", "binpack"]),
    ("{max_replicas_per_node: 0}", ["workers.placement.max_replicas_per_node: expected an integer >= 1"]),
    ("{constraint: [node.role==worker]}", ["workers.placement.constraint: unknown key; did you mean 'constraints'"]),
    ("[node.role==worker]", ["workers.placement: expected a mapping of constraints, preferences"]),
])
def test_bad_placement_names_the_key_and_the_form(project, placement, expected):
    message = error_of(write(project, GOOD + f"workers: {{count: 2, placement: {placement}}}\n"), environ={})
    for part in expected:
        assert part in message, message


def test_precedence_defaults_spec_environment_flags(project, monkeypatch):
    monkeypatch.chdir(project)
    path = write(project, GOOD + "workers: 3\nbackend: local\n")
    assert load_spec(path, environ={}).workers == 3
    assert load_spec(path, environ={"MRCTL_WORKERS": "5"}).workers == 5
    env = {"MRCTL_WORKERS": "5", "MRCTL_BACKEND": "inline"}
    spec = load_spec(path, Overrides(workers=7, output="x.jsonl", inputs=("data/b.txt",)), environ=env)
    assert (spec.workers, spec.backend, spec.output_format) == (7, "inline", "jsonl")
    assert spec.inputs == (project / "data" / "b.txt",)


@pytest.mark.parametrize("extra,expected", [
    ("reducer: 4\n", ["spec.yaml:7", "reducer: unknown key", "did you mean 'reducers'"]),
    ("reducers: four\n", ["spec.yaml:7", "reducers", "integer >= 0", "'four'"]),
    ("reducers: -1\n", ["spec.yaml:7", "reducers", "integer >= 0"]),
    ("workers: true\n", ["spec.yaml:7", "workers", "integer >= 1", "True"]),
    ("chunk_size: 4 parsecs\n", ["spec.yaml:7", "chunk_size", "size in bytes"]),
    ("task_timeout: -1\n", ["spec.yaml:7", "task_timeout", "seconds > 0"]),
    ("output: {format: xml}\n", ["spec.yaml:7", "output.format", "json, jsonl, tsv", "'xml'"]),
    ("backend: kubernetes\n", ["spec.yaml:7", "backend", "docker, swarm, local, inline"]),
    ("encoding: latin1\n", ["spec.yaml:7", "encoding", "replace, strict"]),
    ("workers: {count: 2, gpus: 1}\n", ["spec.yaml:7", "workers.gpus: unknown key; did you mean 'cpus'"]),
    ("bad_records: {policy: ignore}\n", ["spec.yaml:7", "bad_records: policy: expected one of fail, skip"]),
    ("bad_records: {policy: skip, max: -1}\n", ["spec.yaml:7", "bad_records: max: expected an integer >= 0"]),
    ("bad_records: {policy: fail, max: 3}\n", ["spec.yaml:7", "max: only meaningful with policy: skip"]),
    ("bad_records: {skip: 3}\n", ["spec.yaml:7", "bad_records: skip: unknown key; expected one of policy, max"]),
])
def test_bad_values_name_file_line_key_and_expectation(project, extra, expected):
    message = error_of(write(project, GOOD + extra), environ={})
    for part in expected:
        assert part in message, message


def test_missing_input_module_and_class(project):
    missing_input = GOOD.replace("input: data/", "input: nowhere/*.txt")
    assert "matches no file" in error_of(write(project, missing_input), environ={})
    missing_module = GOOD.replace("module: job.py", "module: nope.py")
    message = error_of(write(project, missing_module), environ={})
    assert "spec.yaml:4: job.module: no such file" in message
    missing_class = GOOD.replace("mapper: M", "mapper: WordMapper")
    message = error_of(write(project, missing_class), environ={})
    assert "spec.yaml:5: job.mapper: no class 'WordMapper' in job.py (classes there: M, R)" in message
    assert "name: missing (required)" in error_of(write(project, "input: data/\n"), environ={})


def test_module_syntax_error_points_at_the_module_line(project):
    (project / "job.py").write_text("class M:\n    def map(self, line)\n        pass\n")
    message = error_of(write(project, GOOD), environ={})
    assert "job.py:2: syntax error" in message


def test_yaml_errors_empty_files_and_non_mappings(project):
    assert "spec.yaml:3: invalid YAML" in error_of(write(project, "name: x\ninput: [a\njob: {\n"), environ={})
    assert "empty" in error_of(write(project, ""), environ={})
    assert "expected a mapping" in error_of(write(project, "- just\n- a list\n"), environ={})
    assert "no such job spec file" in error_of(project / "absent.yaml", environ={})


def _mrctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrctl", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_cli_validate_and_bad_spec_exit_codes(project):
    ok = _mrctl("validate", "jobspecs/wordcount.yaml")
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = _mrctl("run", str(write(project, GOOD + "reducers: many\n")))
    assert bad.returncode == 2
    assert "reducers" in bad.stderr and "Traceback" not in bad.stderr
    usage = _mrctl("run", "jobspecs/wordcount.yaml", "--workers", "several")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_the_example_spec_scales_and_its_sample_is_instructive(tmp_path):
    """The spec users copy: its sample makes a map task per file, and 100 MB of input makes
    tens of map tasks, not hundreds of thousands (counted independently: bytes / chunk size)."""
    from mrctl.io.chunks import plan_chunks

    spec = load_spec(ROOT / "jobspecs" / "wordcount.yaml")
    sample = sorted(p for p in (ROOT / "jobspecs" / "data").glob("*.txt") if p.is_file())
    assert len(plan_chunks(spec.inputs, spec.chunk_size)) == len(sample) >= 3

    big = tmp_path / "big.txt"
    line = b"It was the best of times, it was the worst of times.\n"
    with big.open("wb") as f:
        for _ in range(100_000_000 // (len(line) * 1000)):
            f.write(line * 1000)
    tasks = len(plan_chunks((big,), spec.chunk_size))
    expected = -(-big.stat().st_size // spec.chunk_size)  # whole lines may add one
    assert expected <= tasks <= expected + 1 and tasks <= 30


def test_input_mappings_name_and_tag_each_file_and_lend_them_to_input_flags(tmp_path, monkeypatch):
    (tmp_path / "job.py").write_text(MODULE)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "b.log").write_text("x\n")
    (tmp_path / "logs" / "a.log").write_text("x\n")
    (tmp_path / "other.log").write_text("y\n")
    (tmp_path / "s.yaml").write_text("name: s\ninput: {path: logs/, tag: log}\n"
                                     "job: {module: job.py, mapper: M, reducer: R}\nparams: {k: [1, 2]}\n")
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.input_names == ("logs/a.log", "logs/b.log") and spec.input_tags == ("log", "log")
    assert spec.params == {"k": [1, 2]}
    monkeypatch.chdir(tmp_path)
    over = load_spec(tmp_path / "s.yaml", Overrides(inputs=("other.log",), params=(("k", 3), ("j", "x"))))
    assert over.input_names == ("other.log",) and over.input_tags == ("log",)
    assert over.params == {"k": 3, "j": "x"}


@pytest.mark.parametrize("source,mapper,reducer,needle", [
    (MODULE, "R", "R", "R in job.py is a Reducer, but the mapper must be a subclass of mrctl.Mapper"),
    (MODULE, "M", "M", "M in job.py is a Mapper, but the reducer must be a subclass of mrctl.Reducer"),
    (MODULE + "class Lazy(M):\n    pass\nclass Empty(Reducer):\n    pass\n", "Lazy", "Empty",
     "Empty in job.py defines no reduce()"),
    ("from mrctl import Mapper, Reducer\nclass N(Mapper):\n    def setup(self):\n        pass\n"
     "class R(Reducer):\n    def reduce(self, k, v):\n        return 1\n", "N", "R",
     "N in job.py defines no map or map_chunk()"),
])
def test_validate_checks_each_class_plays_its_role(tmp_path, source, mapper, reducer, needle):
    """Read from the source, never run: a Reducer given as the mapper said 'ok' before."""
    (tmp_path / "job.py").write_text(source)
    (tmp_path / "in.txt").write_text("x\n")
    (tmp_path / "s.yaml").write_text(f"name: s\ninput: in.txt\njob: {{module: job.py, mapper: {mapper}, "
                                     f"reducer: {reducer}}}\n")
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "s.yaml")
    assert needle in str(info.value) and "s.yaml:3: job." in str(info.value)


def test_classes_inheriting_from_elsewhere_are_not_second_guessed(tmp_path):
    (tmp_path / "job.py").write_text("from somewhere import Base\nclass M(Base):\n    pass\n"
                                     "from mrctl import Reducer\nclass R(Reducer):\n    def reduce(self, k, v):\n"
                                     "        return 1\n")
    (tmp_path / "in.txt").write_text("x\n")
    (tmp_path / "s.yaml").write_text("name: s\ninput: in.txt\njob: {module: job.py, mapper: M, reducer: R}\n")
    assert load_spec(tmp_path / "s.yaml").mapper == "M"
