"""The timeline picture (issue 15.2): the layout of a real run with chaos kills, checked against
the run's own attempts and events, the files it draws decoded by independent readers, and the
`mrctl timeline` and `mrctl run --timeline` commands.

The pictures are written to $MRCTL_TEST_ARTIFACTS (default /tmp/mrctl-test-artifacts) so that a
person can look at them; they are not committed.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import ROOT, corpus_files
from jobs import RAISES, SLOW, make_spec
from typer.testing import CliRunner

from mrctl.cli.main import app
from mrctl.master.chaos import parse_chaos
from mrctl.master.driver import RunOptions, run_job
from mrctl.observe.history import History
from mrctl.observe.record import Attempt, RunRecord
from mrctl.observe.snapshot import Event
from mrctl.observe.timeline import draw
from mrctl.observe.timeline_layout import Layout, layout

SVG = "{http://www.w3.org/2000/svg}"
FAILED = {"error", "timeout", "oom"}  # what the picture calls "failed"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    # not tempfile.gettempdir(): conftest points that at a private dir removed after the session
    folder = Path(os.environ.get("MRCTL_TEST_ARTIFACTS") or "/tmp/mrctl-test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def chaos_run(tmp_path_factory) -> RunRecord:
    """A real local-backend run whose workers are busy (each task sleeps first) while chaos
    kills two of them: the record that run_job hands to on_record."""
    tmp = tmp_path_factory.mktemp("chaos")
    spec = make_spec(tmp, SLOW, corpus_files(), mapper="SlowMapper", reducer="SlowReducer",
                     workers=3, chunk_size=128 << 10, reducers=3)
    records: list[RunRecord] = []
    run_job(spec, RunOptions(chaos=parse_chaos("kill=2,every=0.5,seed=1")), on_record=records.append)
    assert len(records) == 1
    return records[0]


def expected_rows(run: RunRecord) -> list[str]:
    """Workers in the order each first appears: its first attempt, its kill, or its start as a
    replacement (from the event text, read here on its own)."""
    seen: dict[str, float] = {}
    for a in run.attempts:
        seen[a.worker] = min(a.start, seen.get(a.worker, a.start))
    for e in run.events:
        names = re.findall(r"started (worker-\d+)", e.message) if e.kind == "replaced" else \
            re.findall(r"killed (worker-\d+)", e.message) if e.kind == "chaos" else []
        for name in names:
            seen[name] = min(e.at, seen.get(name, e.at))
    return sorted(seen, key=lambda w: (seen[w], int(w.split("-")[1])))


@pytest.mark.slow
def test_layout_of_a_run_with_chaos_kills(chaos_run):
    run = chaos_run
    kills = [(e.at, e.message.rsplit(" ", 1)[1]) for e in run.events if e.kind == "chaos"]
    replaced = [e for e in run.events if e.kind == "replaced"]
    lost = [a for a in run.attempts if a.outcome == "lost"]
    assert len(kills) == 2 and len(replaced) >= 2, run.events
    assert lost, "a killed busy worker's attempt is lost"
    assert {a.worker for a in lost} <= {w for _, w in kills}, "only chaos kills lose attempts here"

    lay = layout(run)
    assert list(lay.rows) == expected_rows(run)
    new_workers = [re.search(r"started (\S+)", e.message).group(1) for e in replaced]
    assert set(new_workers) <= set(lay.rows) and len(lay.rows) >= 3 + len(kills)

    # exactly one bar per attempt, on its worker's row, with its times and outcome
    assert len(lay.bars) == len(run.attempts)
    bars = {(b.step, b.tid, b.attempt): b for b in lay.bars}
    for a in run.attempts:
        b = bars[(a.step, a.tid, a.attempt)]
        assert lay.rows[b.row] == a.worker
        assert b.start == a.start
        assert b.start + b.width == pytest.approx(a.end if a.end is not None else run.elapsed)
        assert b.phase == ("map" if a.tid.startswith("m:") else "reduce")
        assert b.outcome == ("failed" if a.outcome in FAILED else a.outcome)
        assert b.backup == a.backup

    # an X on the killed worker's row when it was killed; each lost attempt had started before
    # the master saw its worker dead (a busy worker may claim its next task between the chaos
    # event's stamp and the SIGKILL's arrival, on a loaded machine)
    assert [(k.at, lay.rows[k.row]) for k in lay.kills] == kills
    seen_dead = {e.message.split(" ", 1)[0]: e.at for e in replaced}
    for a in lost:
        assert a.worker in seen_dead and a.start <= seen_dead[a.worker], a
    assert [lay.rows[m.row] for m in lay.replacements] == new_workers

    # the shuffle barrier: after every map commit of the step, before its reduces began
    assert lay.barriers == run.barriers and len(lay.barriers) == 1
    commits = [a for a in run.attempts if a.outcome == "committed"]
    last_map = max(a.end for a in commits if a.tid.startswith("m:"))
    first_reduce = min(a.start for a in run.attempts if a.tid.startswith("r:"))
    assert last_map - 0.25 <= lay.barriers[0] <= first_reduce + 0.25  # two clocks, ms apart
    assert lay.end >= run.elapsed


def test_pictures_of_the_chaos_run_decode(chaos_run, artifacts):
    import matplotlib.image

    png = draw(chaos_run, artifacts / "chaos-run.png")
    pixels = matplotlib.image.imread(png)
    height, width = pixels.shape[:2]
    assert 800 <= width <= 3000 and 300 <= height <= 3000, pixels.shape
    assert pixels[..., :3].std() > 0.05, "not a blank picture"

    svg = draw(chaos_run, artifacts / "chaos-run.svg")
    root = ET.parse(svg).getroot()
    texts = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    for expected in ("seconds since the run started", "workers", "map attempt, committed",
                     "reduce attempt, committed", "lost (worker died or went silent)", "chaos kill",
                     "shuffle barrier", "replacement worker started", chaos_run.job_id, *layout(chaos_run).rows):
        assert expected in texts, expected

    page = draw(chaos_run, artifacts / "chaos-run.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "</svg>" in page
    assert f"<title>mrctl timeline: test · {chaos_run.job_id} · succeeded</title>" in page
    assert "chaos killed worker-" in page and "shuffle barrier at" in page
    assert not re.search(r'<script|(?:src|href)="https?:', page), "self-contained: no scripts, nothing fetched"


def record(attempts: list[Attempt], events: tuple[Event, ...] = (), elapsed: float = 10.0) -> RunRecord:
    return RunRecord("20261129-000000-abcd", "unit", "failed", 1, 0.0, elapsed, "local", 2,
                     barriers=(4.0,), events=events, attempts=tuple(attempts))


def test_layout_rules_on_a_hand_made_record():
    run = record([
        Attempt("m:0", 1, "worker-2", 0.5, 3.0, "committed"),
        Attempt("m:1", 1, "worker-1", 0.5, 2.0, "timeout"),
        Attempt("m:1", 2, "worker-10", 2.5, 3.5, "oom"),
        Attempt("m:2", 1, "worker-1", 2.1, 3.9, "refused"),
        Attempt("m:3", 2, "worker-2", 3.2, 3.6, "cancelled", backup=True),
        Attempt("r:0", 1, "worker-1", 4.5, None),  # still running when the run ended
    ], events=(Event(6.0, "chaos", "chaos: killed worker-1"),
               Event(6.5, "replaced", "worker-1 was killed (exit -9); started worker-11"),
               Event(7.0, "info", "started worker-12 is not a replacement event")))
    lay = layout(run)
    assert lay.rows == ("worker-1", "worker-2", "worker-10", "worker-11")  # ties: worker-2 < worker-10
    assert [b.outcome for b in lay.bars] == ["committed", "failed", "failed", "refused", "cancelled", "running"]
    assert lay.bars[-1].width == pytest.approx(10.0 - 4.5) and lay.bars[-1].phase == "reduce"
    assert lay.bars[4].backup and lay.bars[4].row == 1
    assert [(m.at, m.row) for m in lay.kills] == [(6.0, 0)]
    assert [(m.at, m.row, m.worker) for m in lay.replacements] == [(6.5, 3, "worker-11")]
    assert lay.end == 10.0
    assert layout(record([])) == Layout((), (), (4.0,), (), (), 10.0)


def test_ten_thousand_tiny_tasks_draw_as_a_few_collections(artifacts):
    """Not one artist per bar: the picture of 10k attempts is a handful of collections (so it
    draws in seconds; the time is printed, not asserted, on a loaded machine)."""
    from mrctl.observe.timeline_plot import plot

    rnd = random.Random(3)
    ends = dict.fromkeys((f"worker-{i}" for i in range(1, 9)), 0.0)
    attempts = []
    for i in range(10_000):
        worker = min(ends, key=ends.get)
        start, ends[worker] = ends[worker], ends[worker] + rnd.uniform(0.0005, 0.003)
        outcome = "committed" if rnd.random() > 0.01 else rnd.choice(["error", "lost", "refused"])
        attempts.append(Attempt(f"m:{i}", 1, worker, start, ends[worker], outcome, backup=rnd.random() < 0.003))
    run = record(attempts, elapsed=max(ends.values()) + 0.1)
    t0 = time.perf_counter()
    figure = plot(run, layout(run))
    (ax,) = figure.axes
    assert len(ax.collections) <= 20 and not ax.patches
    draw(run, artifacts / "tiny-tasks.png")
    print(f"10,000 attempts drawn in {time.perf_counter() - t0:.2f} s")


def test_unknown_suffix_is_a_usage_error(tmp_path):
    from mrctl.errors import SpecError

    with pytest.raises(SpecError) as info:
        draw(record([]), tmp_path / "t.pdf")
    assert info.value.exit_code == 2 and ".png, .svg, .html" in str(info.value)
    assert not list(tmp_path.iterdir())


def test_a_picture_that_cannot_be_written_is_an_error_but_not_a_runs_failure(tmp_path, caplog):
    from mrctl.errors import SpecError
    from mrctl.observe.timeline import drawer

    target = tmp_path / "no-such-dir" / "t.png"
    with pytest.raises(SpecError) as info:
        draw(record([]), target)
    assert info.value.exit_code == 2 and "cannot write it" in str(info.value)
    drawer(target)(record([]))  # what mrctl run --timeline does when the run ends: it warns
    assert any(r.levelname == "WARNING" and str(target) in r.getMessage() for r in caplog.records)
    assert drawer(None) is None


def test_mrctl_timeline_draws_a_recorded_run(chaos_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MRCTL_HISTORY", str(tmp_path / "history.sqlite"))
    older = RunRecord("20200101-000000-0000", "test", "succeeded", 0, 1.0, 1.0, "local", 1)
    with History() as h:
        h.record(older)
        h.record(chaos_run)
    runner = CliRunner()
    for job, name in [(chaos_run.job_id[:17], "by-prefix.svg"), ("test", "by-name.svg"), (None, "newest.svg")]:
        out = tmp_path / name
        result = runner.invoke(app, ["timeline", *([job] if job else []), "-o", str(out)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert f"timeline of {chaos_run.job_id}" in result.output
        assert chaos_run.job_id in " ".join("".join(t.itertext()) for t in ET.parse(out).getroot().iter(f"{SVG}text"))

    wrong = runner.invoke(app, ["timeline", "-o", str(tmp_path / "t.jpg")], catch_exceptions=False)
    assert wrong.exit_code == 2 and ".png, .svg, .html" in wrong.output
    missing = runner.invoke(app, ["timeline", "nosuchjob", "-o", str(tmp_path / "t.png")], catch_exceptions=False)
    assert missing.exit_code == 2 and "no run 'nosuchjob'" in missing.output
    assert not (tmp_path / "t.jpg").exists() and not (tmp_path / "t.png").exists()


def failing_spec(tmp_path: Path) -> Path:
    """A job whose mapper raises on one line on every attempt: the run fails after 2."""
    markers = tmp_path / "markers"
    markers.mkdir()
    (tmp_path / "job.py").write_text(RAISES.format(markers=str(markers), needle="needle"))
    data = tmp_path / "input.txt"
    data.write_text("alpha beta\n" * 50 + "needle\n" + "gamma\n" * 50)
    spec = tmp_path / "failing.yaml"
    spec.write_text(f"name: failing\ninput: {data}\n"
                    "job: {module: job.py, mapper: FaultyMapper, reducer: SumReducer}\n"
                    f"workers: 2\nreducers: 2\nmax_attempts: 2\nbackend: local\noutput: {tmp_path / 'out.json'}\n")
    return spec


def test_run_timeline_draws_a_failed_run_too(tmp_path, artifacts):
    picture = artifacts / "failed-run.html"
    picture.unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["run", str(failing_spec(tmp_path)), "--plain", "--timeline", str(picture)],
                                catch_exceptions=False)
    assert result.exit_code == 1, result.output
    with History() as h:
        run = h.get("failing")
    page = picture.read_text(encoding="utf-8")
    assert run.job_id in page and "failed (exit 1)" in page and "<svg" in page
    assert f"{len(run.failures())} failed" in page and len(run.failures()) == 2
    assert "failed (error, timeout, out of memory)" in page  # the legend names the failed bars


def test_run_timeline_suffix_is_checked_before_the_run(tmp_path):
    with History() as h:
        before = len(h.runs(1000))
    result = CliRunner().invoke(app, ["run", str(failing_spec(tmp_path)), "--timeline", str(tmp_path / "t.gif")],
                                catch_exceptions=False)
    assert result.exit_code == 2 and ".png, .svg, .html" in result.output
    with History() as h:
        assert len(h.runs(1000)) == before, "nothing ran"


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
def test_wordcount_with_chaos_on_docker_draws_workers_replacements_and_killed_attempts(tmp_path, artifacts):
    """The issue's "done means": a word count on four Docker workers with two chaos kills, then
    `mrctl timeline JOB -o t.png`. The sample input is three short texts, gone before a kill:
    the Gutenberg books twelve times over (about 40 MB) in 256 KiB chunks keep the workers busy."""
    inputs = tmp_path / "books"
    inputs.mkdir()
    for i in range(12):  # copies: links to one file are one input
        for book in corpus_files():
            shutil.copyfile(book, inputs / f"{i}-{book.name}")
    mrctl = [sys.executable, "-m", "mrctl"]
    ran = subprocess.run([*mrctl, "run", "jobspecs/wordcount.yaml", "--workers", "4", "--chaos", "kill=2,every=1",
                          "--input", str(inputs), "--chunk-size", "256KiB", "--output", str(tmp_path / "wc.json"),
                          "--plain"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    job = re.search(r"job wordcount \((\S+)\) succeeded", ran.stderr).group(1)
    picture = artifacts / "docker-wordcount-chaos.png"
    drawn = subprocess.run([*mrctl, "timeline", job, "-o", str(picture)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert drawn.returncode == 0, drawn.stderr

    import matplotlib.image

    assert matplotlib.image.imread(picture).shape[1] >= 800
    with History() as h:
        run = h.get(job)
    lay = layout(run)
    killed = [e.message.rsplit(" ", 1)[1] for e in run.events if e.kind == "chaos"]
    started = [e.message.rsplit(" ", 1)[1] for e in run.events if e.kind == "replaced"]
    assert len(killed) == 2 and len(started) >= 2, run.events
    assert {f"worker-{i}" for i in range(1, 5)} | set(started) == set(lay.rows)
    assert [lay.rows[k.row] for k in lay.kills] == killed
    assert [lay.rows[m.row] for m in lay.replacements] == started
    lost = [b for b in lay.bars if b.outcome == "lost"]
    assert lost and {lay.rows[b.row] for b in lost} <= set(killed)


def test_the_worker_image_leaves_the_drawing_library_and_the_web_stack_out():
    """Workers never draw or serve a page: matplotlib (about 210 MB with numpy, pillow and
    fonts), starlette and uvicorn stay on the host. The Docker tests build the image from
    exactly these requirements, mrjob among them when it is installed here."""
    import importlib.metadata
    import tomllib

    from mrctl.images.build import worker_requirements

    host_only = ("matplotlib", "starlette", "uvicorn")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all(any(d.startswith(name) for d in declared) for name in host_only)
    needed = worker_requirements()
    # and mrjob, an extra the tests install, at the version installed here (for `mrctl mrjob`)
    extra = f"mrjob=={importlib.metadata.version('mrjob')}"
    assert set(needed) == {d for d in declared if not d.startswith(host_only)} | {extra}
    assert "--no-deps /tmp/wheels/*.whl" in (ROOT / "Dockerfile.worker").read_text()
