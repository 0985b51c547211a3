"""The Python API (issue 12, items 3 and 7): mrctl.run, RunResult.pairs, mrctl.read_output for
every output format, and mrctl.testing.run_inline. Expected values come from plain Python."""

from __future__ import annotations

import collections
import json
import re

import pytest
from conftest import ROOT, corpus_files
from jobs import RAISES, WORDCOUNT, make_spec

import mrctl
from mrctl.testing import run_inline
from mrctl.worker.loader import job_classes, load_module

WORD = re.compile(r"[^\W\d_]+")


def _count(paths) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                counts.update(w.lower() for w in WORD.findall(line))
    return dict(counts)


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_run_returns_a_result_whose_pairs_are_the_output(tmp_path, backend):
    book = corpus_files()[1]
    result = mrctl.run(ROOT / "jobspecs" / "wordcount.yaml", inputs=[book], output=tmp_path / "wc.jsonl",
                       backend=backend, workers=2, chunk_size="64KiB")
    assert result.status == "succeeded" and result.output_path == tmp_path / "wc.jsonl"
    assert dict(result.pairs()) == _count([book])
    assert result.snapshot.map.done == result.snapshot.map.total > 1


def test_run_raises_typed_errors(tmp_path):
    with pytest.raises(mrctl.SpecError) as info:
        mrctl.run(ROOT / "jobspecs" / "wordcount.yaml", wokers=2)
    assert "unknown setting 'wokers'" in str(info.value)
    data = tmp_path / "in.txt"
    data.write_text("fine\npoison here\n")
    markers = tmp_path / "markers"
    markers.mkdir()
    spec = make_spec(tmp_path, RAISES.format(markers=str(markers), needle="poison"), [data],
                     mapper="FaultyMapper", backend="inline")
    with pytest.raises(mrctl.JobFailed) as failed:
        mrctl.run(spec)
    assert "ZeroDivisionError" in str(failed.value) and not spec.output_path.exists()


TRICKY = '''
from mrctl import Mapper, Reducer


class EchoMapper(Mapper):
    def map(self, line):
        key, value = line.split("|")
        yield key, value.replace("<TAB>", "\\t").replace("<NL>", "\\n").replace("<BS>", "\\\\")


class ListReducer(Reducer):
    def reduce(self, key, values):
        return values[0] if len(values) == 1 else sorted(values)
'''


@pytest.mark.parametrize("fmt", ["json", "jsonl", "tsv", "csv"])
def test_every_output_format_reads_back_and_no_value_breaks_a_row(tmp_path, fmt):
    data = tmp_path / "in.txt"
    rows = ["a|plain", "b|tab<TAB>inside", "c|two<NL>lines", "d|back<BS>slash<BS>t", "e|x", "e|y", 'f|"quoted, comma"']
    data.write_text("\n".join(rows) + "\n")
    spec = make_spec(tmp_path, TRICKY, [data], mapper="EchoMapper", reducer="ListReducer", combiner=None,
                     backend="inline", output=f"out.{fmt}")
    expected: dict[str, list[str]] = collections.defaultdict(list)
    for row in rows:
        key, value = row.split("|")
        expected[key].append(value.replace("<TAB>", "\t").replace("<NL>", "\n").replace("<BS>", "\\"))
    want = {k: v[0] if len(v) == 1 else sorted(v) for k, v in expected.items()}
    got = dict(mrctl.read_output(mrctl.run(spec).output_path))
    if fmt in ("tsv", "csv"):  # text formats: non-string values come back as their JSON text
        want = {k: v if isinstance(v, str) else json.dumps(v) for k, v in want.items()}
    assert got == want
    if fmt == "tsv":
        assert all(line.count("\t") == 1 for line in spec.output_path.read_text().splitlines())
        assert len(spec.output_path.read_text().splitlines()) == len(want)


def test_run_inline_gives_what_a_distributed_run_writes(tmp_path):
    module = load_module("wc_for_api", WORDCOUNT)
    classes = job_classes(module, "WordMapper", "SumReducer", "SumReducer")
    lines = corpus_files()[0].read_text(encoding="utf-8", errors="replace").splitlines()[:400]
    pairs = run_inline(classes.mapper, classes.reducer, lines, combiner=classes.combiner)
    assert pairs == sorted(collections.Counter(w.lower() for line in lines for w in WORD.findall(line)).items())


def test_run_inline_passes_params():
    class Scaled(mrctl.Mapper):
        def map(self, line):
            yield line, self.params["scale"]

    class Sum(mrctl.Reducer):
        def reduce(self, key, values):
            return sum(values) * self.params["scale"]

    assert run_inline(Scaled, Sum, ["x", "y", "x"], params={"scale": 3}) == [("x", 18), ("y", 9)]


def test_the_docs_unit_test_example_passes(monkeypatch):
    """The docs' pytest example for a job (docs/pages/testing.md), run as written against
    jobspecs/wordcount.py."""
    page = (ROOT / "docs" / "pages" / "testing.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(# test_wordcount\.py.*?)```", page, re.S).group(1)
    monkeypatch.syspath_prepend(str(ROOT / "jobspecs"))
    namespace: dict = {}
    exec(compile(block, "testing.md", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert tests
    for test in tests:
        test()
