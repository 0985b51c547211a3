"""Issue 12, item 2: input formats (jsonl, csv, whole_file, compressed, delimited records).

Every expected output is computed here in plain Python straight from the input files (json,
csv, gzip modules), never through mrctl's own parsing; each job runs on the inline and local
backends at several chunk sizes, and the outputs must be byte-identical.
"""

from __future__ import annotations

import bz2
import collections
import csv
import gzip
import json
import lzma
import random
from pathlib import Path

import pytest
from conftest import sequential_wordcount
from jobs import WORDCOUNT, make_spec

from mrctl.errors import JobFailed, SpecError
from mrctl.io.chunks import plan_chunks, read_chunk
from mrctl.io.formats import InputFormat
from mrctl.master.driver import run_job
from mrctl.spec.jobspec import Overrides, load_spec

JSONL, CSV, WHOLE = InputFormat("jsonl"), InputFormat("csv"), InputFormat("whole_file")

JOBS = WORDCOUNT + '''

class AmountByUser(Mapper):
    """jsonl: a parsed JSON value per record."""

    def map(self, event):
        yield event["user"], event["amount"]


class CityMapper(Mapper):
    """csv: a dict per row, keyed by the header."""

    def map(self, row):
        yield row["city"], [row["name"], int(row["amount"])]


class Collect(Reducer):
    def reduce(self, key, values):
        return sorted(values)


class FileStats(Mapper):
    """whole_file: one record, the file's whole text."""

    def map(self, text):
        yield self.input_path.rsplit("/", 1)[-1], [len(text), text.count("\\n"), text[:20]]


class AptRecords(Mapper):
    """records: one multi-line apt history record per call."""

    def map(self, record):
        fields = dict(line.split(": ", 1) for line in record.split("\\n"))
        yield "command " + fields["Commandline"].split()[1], 1
        for action in ("Install", "Upgrade", "Remove"):
            if action in fields:
                yield action, fields[action].count("),") + 1
'''


def _run(tmp_path: Path, name: str, inputs: list[Path], formats: tuple, backend: str, chunk_size: int,
         **kw) -> str:
    """Run a job in its own directory; return its output text."""
    work = tmp_path / f"{name}-{backend}-{chunk_size}"
    work.mkdir()
    spec = make_spec(work, JOBS, inputs, input_formats=formats, backend=backend, chunk_size=chunk_size,
                     workers=2, **kw)
    final = run_job(spec)
    assert final.status == "succeeded"
    return spec.output_path.read_text(encoding="utf-8")


def _runs(tmp_path: Path, inputs: list[Path], formats: tuple, chunk_sizes: tuple[int, ...], **kw) -> str:
    """The output of the job on inline at every chunk size and on local at the smallest; all
    must be the same bytes."""
    outs = {(b, c): _run(tmp_path, "job", inputs, formats, b, c, **kw) if b == "inline" or c == min(chunk_sizes)
            else None for b in ("inline", "local") for c in chunk_sizes}
    texts = {k: v for k, v in outs.items() if v is not None}
    first = next(iter(texts.values()))
    assert all(v == first for v in texts.values()), {k: v[:200] for k, v in texts.items()}
    return first


# -- jsonl ---------------------------------------------------------------------------------

def test_jsonl_records_are_parsed_json_values(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "events.jsonl"
    lines = [json.dumps({"user": rng.choice(["ada", "lin", "zoë"]), "amount": rng.randint(1, 99),
                         "note": "x" * rng.randint(0, 30)}, ensure_ascii=False) for _ in range(60)]
    lines.insert(10, "   ")  # a blank line is not a record
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = collections.Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            event = json.loads(line)
            expected[event["user"]] += event["amount"]
    out = _runs(tmp_path, [path], (JSONL,), (16, 300, 1 << 20), mapper="AmountByUser")
    assert json.loads(out) == dict(expected)


def test_a_bad_json_line_fails_the_task_naming_file_and_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"user": "ada", "amount": 1}\n' * 5 + '{"user": oops}\n' + '{"user": "x", "amount": 2}\n')
    for backend in ("inline", "local"):
        work = tmp_path / backend
        work.mkdir()
        spec = make_spec(work, JOBS, [path], input_formats=(JSONL,), backend=backend, chunk_size=40,
                         mapper="AmountByUser", max_attempts=1)
        with pytest.raises(JobFailed) as failed:
            run_job(spec)
        text = str(failed.value)
        assert "BadRecord" in text and "invalid JSON" in text and str(path) in text, text
        assert "line 6" in text, text


# -- csv -----------------------------------------------------------------------------------

def _csv_rows(rng: random.Random, count: int, eol: str = "\n") -> list[list[str]]:
    names = ["Ada", "Lin, Jr.", 'Grace "Amazing"', "multi\nline\nname", "Zoë", "trailing\n"]
    return [[(rng.choice(names) + str(i)).replace("\n", eol),
             rng.choice(["Paris", "Köln", "New\nYork", "Oslo, NO"]).replace("\n", eol),
             str(rng.randint(1, 500))] for i in range(count)]


def _write_csv(path: Path, rows: list[list[str]], lineterminator: str) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator=lineterminator)
        writer.writerow(["name", "city", "amount"])
        writer.writerows(rows)


def test_csv_group_by_with_quoted_newlines_at_a_tiny_chunk_size(tmp_path):
    rng = random.Random(12)
    unix, dos = tmp_path / "a.csv", tmp_path / "b.csv"
    _write_csv(unix, _csv_rows(rng, 40), "\n")
    _write_csv(dos, _csv_rows(rng, 25, "\r\n"), "\r\n")
    assert b'"multi\nline' in unix.read_bytes() and b'"New\r\nYork' in dos.read_bytes()
    expected = collections.defaultdict(list)
    for path in (unix, dos):
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                expected[row["city"]].append([row["name"], int(row["amount"])])
    out = _runs(tmp_path, [unix, dos], (CSV, CSV), (16, 100, 1 << 20), mapper="CityMapper",
                reducer="Collect", combiner=None)
    assert json.loads(out) == {k: sorted(v) for k, v in expected.items()}


def test_csv_chunks_never_split_a_record(tmp_path):
    """At every chunk size, the rows of all chunks are csv.DictReader's rows of the whole file."""
    from mrctl.job import Mapper
    from mrctl.worker import tasks

    class Rows(Mapper):
        def map(self, row):
            yield "rows", row

    path = tmp_path / "x.csv"
    _write_csv(path, _csv_rows(random.Random(3), 30), "\n")
    with path.open(encoding="utf-8", newline="") as f:
        expected = list(csv.DictReader(f))
    for chunk_size in range(1, 80, 7):
        plan = plan_chunks([path], chunk_size, (CSV,))
        got = []
        for ref in plan:
            result = tasks.run_map(Rows(), None, read_chunk(ref), 1, fmt=ref.fmt)
            got.extend(tasks.merge_blobs(result.blobs.values()).get("rows", []))
        assert got == expected, chunk_size


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_a_csv_row_with_the_wrong_number_of_fields_names_its_line(tmp_path, backend):
    path = tmp_path / "x.csv"
    path.write_text('name,city,amount\nada,"Paris\nFrance",3\nlin,Oslo\n')
    spec = make_spec(tmp_path, JOBS, [path], input_formats=(CSV,), backend=backend, mapper="CityMapper",
                     max_attempts=1)
    with pytest.raises(JobFailed, match=r"CSV row has 2 fields, the header has 3") as failed:
        run_job(spec)
    where = f"{path}, bytes 17-47, line 4" if backend == "inline" else f"at {path}, line 4"
    assert where in str(failed.value), str(failed.value)  # header 1, "ada" 2-3, "lin" 4


# -- whole_file ----------------------------------------------------------------------------

def test_whole_file_is_one_record_per_file(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("first line\nsecond\n\nlast without newline")
    (folder / "b.txt").write_text("x\n" * 500)
    (folder / "empty.txt").write_text("")
    files = sorted(folder.iterdir())
    expected = {}
    for path in files:
        text = path.read_text(encoding="utf-8")
        expected[path.name] = [[len(text), text.count("\n"), text[:20]]]
    out = _runs(tmp_path, files, (WHOLE,) * 3, (8, 1 << 20), mapper="FileStats", reducer="Collect",
                combiner=None)
    assert json.loads(out) == expected
    assert len(plan_chunks(files, 8, (WHOLE,) * 3)) == 3


# -- compressed ----------------------------------------------------------------------------

def test_gz_bz2_xz_inputs_are_decompressed_one_task_per_file(tmp_path):
    text = "".join(f"Line {i}: the quick brown fox, café {i % 7}\n" for i in range(400))
    plain = tmp_path / "plain.txt"
    plain.write_text(text, encoding="utf-8")
    packed = []
    for suffix, module in (("gz", gzip), ("bz2", bz2), ("xz", lzma)):
        path = tmp_path / f"log.{suffix}"
        path.write_bytes(module.compress(text.encode()))
        packed.append(path)
    assert len(plan_chunks(packed, 64)) == 3  # one map task per compressed file
    out = _runs(tmp_path, packed, (InputFormat(),) * 3, (64, 1 << 20))
    assert out == sequential_wordcount([plain] * 3)


def test_a_compressed_jsonl_file_keeps_its_format(tmp_path):
    path = tmp_path / "events.jsonl.gz"
    events = [{"user": u, "amount": i} for i, u in enumerate(["ada", "lin", "ada", "zoë"] * 20)]
    path.write_bytes(gzip.compress("".join(json.dumps(e) + "\n" for e in events).encode()))
    expected = collections.Counter()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            expected[json.loads(line)["user"]] += json.loads(line)["amount"]
    spec_path = tmp_path / "job.yaml"
    (tmp_path / "job.py").write_text(JOBS)
    spec_path.write_text("name: gzjsonl\ninput: events.jsonl.gz\njob: {module: job.py, mapper: AmountByUser, "
                         "reducer: SumReducer}\nbackend: inline\noutput: out.json\n")
    spec = load_spec(spec_path)
    assert spec.input_formats == (JSONL,)
    run_job(spec)
    assert json.loads((tmp_path / "out.json").read_text()) == dict(expected)


# -- delimited records ---------------------------------------------------------------------

def _apt_history(rng: random.Random, count: int) -> str:
    """A history.log like apt's: a blank line first, then records separated by blank lines."""
    out = []
    for i in range(count):
        command = rng.choice(["install", "upgrade", "remove"])
        pkgs = ", ".join(f"pkg{rng.randint(1, 50)}:amd64 (1.{i})" for _ in range(rng.randint(1, 4)))
        action = {"install": "Install", "upgrade": "Upgrade", "remove": "Remove"}[command]
        out.append(f"Start-Date: 2024-01-{i % 28 + 1:02d}  10:00:{i % 60:02d}\n"
                   f"Commandline: apt-get {command} -y thing{i}\n"
                   f"{action}: {pkgs}\nEnd-Date: 2024-01-{i % 28 + 1:02d}  10:01:00\n")
    return "\n" + "\n".join(out)


def _apt_counts(text: str) -> dict:
    """Group lines into records with a plain state machine (a blank line ends a record)."""
    counts: collections.Counter = collections.Counter()
    record: list[str] = []
    for line in text.splitlines() + [""]:
        if line:
            record.append(line)
            continue
        if record:
            fields = dict(line.split(": ", 1) for line in record)
            counts["command " + fields["Commandline"].split()[1]] += 1
            for action in ("Install", "Upgrade", "Remove"):
                if action in fields:
                    counts[action] += len(fields[action].split(", "))
        record = []
    return dict(counts)


def test_multi_line_records_are_never_split_across_chunks(tmp_path):
    path = tmp_path / "history.log"
    text = _apt_history(random.Random(5), 40)
    path.write_text(text, encoding="utf-8")
    records = InputFormat("records", "\n\n")
    plan = plan_chunks([path], 64, (records,))
    assert len(plan) > 10 and all(read_chunk(ref).endswith(b"\n\n") for ref in plan[:-1])
    out = _runs(tmp_path, [path], (records,), (64, 1000, 1 << 20), mapper="AptRecords")
    assert json.loads(out) == _apt_counts(text)


def test_records_format_from_a_spec(tmp_path):
    (tmp_path / "job.py").write_text(JOBS)
    (tmp_path / "history.log").write_text(_apt_history(random.Random(9), 12))
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text('name: apt\ninput: {path: history.log, format: {records: "\\n\\n"}}\n'
                         "job: {module: job.py, mapper: AptRecords, reducer: SumReducer}\nbackend: inline\n"
                         "chunk_size: 64\noutput: out.json\n")
    run_job(load_spec(spec_path))
    assert json.loads((tmp_path / "out.json").read_text()) == _apt_counts((tmp_path / "history.log").read_text())


# -- the spec ------------------------------------------------------------------------------

def test_extensions_imply_csv_and_jsonl_unless_a_format_is_given(tmp_path, monkeypatch):
    (tmp_path / "job.py").write_text(JOBS)
    for name in ("a.csv", "b.jsonl", "c.txt", "d.csv.gz"):
        (tmp_path / name).write_text("x\n")
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text("name: f\ninput: [a.csv, b.jsonl, c.txt, {path: d.csv.gz, tag: t}]\n"
                         "job: {module: job.py, mapper: WordMapper, reducer: SumReducer}\n")
    monkeypatch.chdir(tmp_path)
    assert load_spec(spec_path).input_formats == (CSV, JSONL, InputFormat(), CSV)
    assert load_spec(spec_path, Overrides(inputs=("a.csv", "b.jsonl"))).input_formats == (CSV, JSONL)
    spec_path.write_text("name: f\ninput: {path: c.txt, format: whole_file}\n"
                         "job: {module: job.py, mapper: WordMapper, reducer: SumReducer}\n")
    assert load_spec(spec_path, Overrides(inputs=("a.csv",))).input_formats == (WHOLE,)  # lent
    for bad in ("xml", "records", "{records: ''}", "{records: 3}", "{lines: x}"):
        spec_path.write_text(f"name: f\ninput: {{path: c.txt, format: {bad}}}\n"
                             "job: {module: job.py, mapper: WordMapper, reducer: SumReducer}\n")
        with pytest.raises(SpecError, match=r"job.yaml:2: input: format:"):
            load_spec(spec_path)


# -- docker --------------------------------------------------------------------------------

@pytest.mark.docker
def test_csv_and_records_on_docker(tmp_path, clean_docker):
    rng = random.Random(21)
    table = tmp_path / "t.csv"
    _write_csv(table, _csv_rows(rng, 30), "\n")
    expected = collections.defaultdict(list)
    with table.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            expected[row["city"]].append([row["name"], int(row["amount"])])
    out = _run(tmp_path, "csv", [table], (CSV,), "docker", 16, mapper="CityMapper", reducer="Collect",
               combiner=None)
    assert out == _run(tmp_path, "csv", [table], (CSV,), "inline", 16, mapper="CityMapper",
                       reducer="Collect", combiner=None)
    assert json.loads(out) == {k: sorted(v) for k, v in expected.items()}


def test_records_of_all_chunks_are_the_records_of_the_whole_file(tmp_path):
    """Runs of newlines longer than the delimiter, stray carriage returns and a text that
    neither starts nor ends with a delimiter: at every chunk size, the same records."""
    from mrctl.job import Mapper
    from mrctl.worker import tasks

    class Records(Mapper):
        def map(self, record):
            yield "r", record

    rng = random.Random(4)
    text = "".join(rng.choice(["a", "bc", "\n", "\n\n", "\n\n\n", "\r\n", "é"]) for _ in range(400))
    path = tmp_path / "r.log"
    path.write_bytes(text.encode())
    expected = [piece.strip("\r\n") for piece in text.split("\n\n") if piece.strip("\r\n")]
    fmt = InputFormat("records", "\n\n")
    for chunk_size in range(1, 120, 9):
        got = []
        for ref in plan_chunks([path], chunk_size, (fmt,)):
            result = tasks.run_map(Records(), None, read_chunk(ref), 1, fmt=ref.fmt)
            got.extend(tasks.merge_blobs(result.blobs.values()).get("r", []))
        assert got == expected, chunk_size


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inline", "local"])
def test_a_bad_jsonl_record_is_skipped_under_the_skip_policy(tmp_path, backend):
    """Parsing errors of formatted records follow the bad-record policy too (items 2 and 5)."""
    import subprocess
    import sys

    rows = [{"k": "a", "n": 1}, {"k": "b", "n": 2}, {"k": "a", "n": 3}]
    lines = [json.dumps(r) for r in rows[:2]] + ["{not json"] + [json.dumps(rows[2])]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "job.py").write_text(
        "from mrctl import Mapper, Reducer\n"
        "class M(Mapper):\n    def map(self, row):\n        yield row['k'], row['n']\n"
        "class R(Reducer):\n    def reduce(self, k, v):\n        return sum(v)\n")
    (tmp_path / "job.yaml").write_text(
        "name: j\ninput: in.jsonl\njob: {module: job.py, mapper: M, reducer: R}\n"
        f"backend: {backend}\nworkers: 1\nchunk_size: 16\nbad_records: {{policy: skip, max: 1}}\n")
    proc = subprocess.run([sys.executable, "-m", "mrctl", "run", "job.yaml", "--json", "-o", "out.json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected: dict[str, int] = {}
    for row in rows:
        expected[row["k"]] = expected.get(row["k"], 0) + row["n"]
    assert json.loads((tmp_path / "out.json").read_text()) == expected
    assert json.loads(proc.stdout)["bad_records"] == 1
