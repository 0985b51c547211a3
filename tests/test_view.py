"""Views are pure functions of a snapshot: render constructed snapshots and read the text."""

from __future__ import annotations

import dataclasses
import io
import json

from rich.console import Console

from mrctl.observe.live_view import LiveReporter, render_live
from mrctl.observe.reporters import JsonReporter, PlainReporter, choose_reporter
from mrctl.observe.snapshot import Event, JobSnapshot, PhaseProgress, StepTasks, WorkerRow
from mrctl.observe.views import summary_dict, summary_lines
from mrctl.spec.bad_records import SkippedRecord

MID_MAP = JobSnapshot(
    job_id="20261124-1", name="wordcount", phase="map", elapsed=12.0,
    map=PhaseProgress(done=5, total=12, running=2, bytes_done=40_000_000, bytes_total=96_000_000,
                      started_at=2.0),
    reduce=PhaseProgress(total=4),
    workers=(WorkerRow("worker-1", "mapping", "m:6", 1, 3, 0.4),
             WorkerRow("worker-2", "dead", None, None, 2, 9.5),
             WorkerRow("worker-3", "reducing", "r:1", 2, 1, 0.2)),
    events=(Event(9.1, "retry", "m:4 attempt 1 on worker-2: lost: lease expired"),
            Event(10.0, "refused", "m:4 attempt 1 on worker-2: late commit refused")),
    retries=1, refused=1, lost=1,
)
DONE = JobSnapshot(
    job_id="20261124-1", name="wordcount", phase="done", elapsed=20.5, status="succeeded",
    map=PhaseProgress(12, 12, 0, 96_000_000, 96_000_000, 2.0, 15.0),
    reduce=PhaseProgress(4, 4, 0, 0, 0, 15.0, 18.0), retries=1, refused=1,
    records_in=2_000_000, records_out=31_000, phase_seconds=(("starting", 2.0), ("map", 13.0)),
    output_path="/tmp/wc.json",
)


def text_of(renderable) -> str:
    console = Console(file=io.StringIO(), width=100, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.file.getvalue()


def test_live_view_shows_phase_progress_workers_and_events():
    text = text_of(render_live(MID_MAP))
    assert "wordcount" in text and "phase: map" in text and "12.0s" in text
    assert "5/12 tasks" in text and "40.0 MB of 96.0 MB" in text and "4.0 MB/s" in text  # 40 MB in 10 s
    assert "ETA 14s" in text and "0/4 tasks" in text
    lines = text.splitlines()
    assert any("worker-1" in li and "mapping" in li and "m:6 #1" in li and "0.4s" in li for li in lines)
    assert any("worker-2" in li and "dead" in li for li in lines)
    assert any("worker-3" in li and "reducing" in li and "r:1 #2" in li for li in lines)
    assert "late commit refused" in text and "lease expired" in text
    assert "retries 1" in text and "refused late commits 1" in text


def test_summary_text_and_json_say_the_same():
    lines = "\n".join(summary_lines(DONE))
    assert "succeeded in 20.50s" in lines and "map tasks 12/12 (96.0 MB)" in lines
    assert "records in 2000000, records out 31000" in lines and "output: /tmp/wc.json" in lines
    data = json.loads(json.dumps(summary_dict(DONE)))
    assert data["status"] == "succeeded" and data["map"] == {"done": 12, "total": 12, "bytes": 96_000_000}
    assert data["phase_seconds"] == {"starting": 2.0, "map": 13.0} and data["retries"] == 1


def test_plain_reporter_prints_phases_and_throttled_progress_without_ansi():
    out, now = io.StringIO(), [0.0]
    reporter = PlainReporter(out, interval=5.0, clock=lambda: now[0])
    reporter.start()
    reporter.update(MID_MAP)  # phase change: one line, progress not yet due
    now[0] = 3.0
    reporter.update(MID_MAP)
    assert out.getvalue().count("\n") == 1 and "phase: map" in out.getvalue()
    now[0] = 5.5
    reporter.update(MID_MAP)
    assert "map 5/12 tasks" in out.getvalue().splitlines()[-1]
    reporter.finish(DONE)
    assert "succeeded" in out.getvalue() and "\x1b" not in out.getvalue()


def test_json_reporter_writes_one_json_line_on_stdout():
    stdout, stderr = io.StringIO(), io.StringIO()
    reporter = JsonReporter(stdout, stderr)
    reporter.update(MID_MAP)
    reporter.log("worker-2 exited", 30)
    reporter.finish(DONE)
    assert len(stdout.getvalue().splitlines()) == 1
    assert json.loads(stdout.getvalue())["job_id"] == "20261124-1"
    assert "worker-2 exited" in stderr.getvalue()


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_choose_reporter_by_terminal_ci_and_flags():
    assert isinstance(choose_reporter(None, io.StringIO(), io.StringIO(), {}), PlainReporter)
    assert isinstance(choose_reporter(None, FakeTTY(), FakeTTY(), {}), LiveReporter)
    assert isinstance(choose_reporter(None, FakeTTY(), FakeTTY(), {"CI": "true"}), PlainReporter)
    assert isinstance(choose_reporter("plain", FakeTTY(), FakeTTY(), {}), PlainReporter)
    assert isinstance(choose_reporter("json", FakeTTY(), FakeTTY(), {}), JsonReporter)


def test_byte_counts_are_shown_in_readable_units():
    from mrctl.observe.views import human_bytes

    assert [human_bytes(n) for n in (0, 812, 3_400, 96_000_000, 2_500_000_000)] == [
        "0 B", "812 B", "3.4 kB", "96.0 MB", "2.5 GB"]


def test_counters_and_skipped_records_in_live_view_summary_and_json():
    snap = dataclasses.replace(
        DONE, counters=(("lines", "a", 40), ("lines", "b", 60), ("words", "long", 3)), bad_records=2,
        bad_record_samples=(SkippedRecord("data/a.csv", 1, "ValueError: bad"),
                            SkippedRecord("data/a.csv", 9, "KeyError: 'x'")))
    live = text_of(render_live(dataclasses.replace(snap, status="running", phase="map")))
    assert "lines: a 40, b 60" in live and "words: long 3" in live and "bad records skipped 2" in live
    lines = summary_lines(snap)
    at = lines.index("  counters:")
    assert lines[at + 1:at + 6] == ["    lines: a 40, b 60", "    words: long 3",
                                    "  bad records skipped: 2, the first:",
                                    "    data/a.csv, line 1: ValueError: bad", "    data/a.csv, line 9: KeyError: 'x'"]
    data = json.loads(json.dumps(summary_dict(snap)))
    assert data["counters"] == {"lines": {"a": 40, "b": 60}, "words": {"long": 3}} and data["bad_records"] == 2
    assert data["bad_record_samples"][1] == {"file": "data/a.csv", "line": 9, "error": "KeyError: 'x'"}
    plain = summary_lines(DONE)  # a job without counters or skipped records shows neither
    assert not any("counters" in li or "bad records" in li for li in plain)
    assert summary_dict(DONE)["counters"] == {} and summary_dict(DONE)["bad_records"] == 0


def test_a_multi_step_job_shows_its_step_everywhere():
    running = dataclasses.replace(MID_MAP, step=3, steps=12, step_name="iterate", iteration=2, iterations=10)
    assert "step 3/12 (iterate, iteration 2/10)" in text_of(render_live(running))
    stream = io.StringIO()
    plain = PlainReporter(stream, interval=100)
    plain.start()
    plain.update(running)
    plain.update(dataclasses.replace(running, step=4, iteration=3))
    assert stream.getvalue().splitlines() == ["[  12.0s] step 3/12 (iterate, iteration 2/10): map",
                                              "[  12.0s] step 4/12 (iterate, iteration 3/10): map"]
    done = dataclasses.replace(DONE, step=12, steps=12, step_name="ranks", step_seconds=(
        ("step 1/12 (graph)", 0.5), *((f"step {i}/12 (iterate, iteration {i - 1}/10)", 0.25) for i in range(2, 12)),
        ("step 12/12 (ranks)", 0.125)))
    assert "  steps: 12 of 12 (graph 0.50s, iterate x10 2.50s, ranks 0.12s)" in summary_lines(done)
    data = summary_dict(done)
    assert (data["step"], data["steps"], data["step_name"]) == (12, 12, "ranks")
    assert data["step_seconds"][1] == {"step": "step 2/12 (iterate, iteration 1/10)", "seconds": 0.25}
    assert "steps:" not in "\n".join(summary_lines(DONE))  # a one-step job: as before


def test_summary_shows_each_steps_tasks_and_sums_a_repeated_one():
    """A step's line per name, iterations summed; the task line is the total over the steps."""
    graph = StepTasks(1, "graph", 2, 2, 5_500_000, 4, 4)
    iterations = [StepTasks(n, "iterate", 4, 4, 2_000_000, 4, 4) for n in range(2, 12)]
    ranks = StepTasks(12, "ranks", 4, 4, 2_000_000, 3, 4)  # failed in its reduce phase
    snap = dataclasses.replace(DONE, step=12, steps=12, step_name="ranks", status="failed",
                               step_tasks=(graph, *iterations, ranks))
    lines = summary_lines(snap)
    at = lines.index("  map tasks 46/46 (27.5 MB), reduce tasks 47/48")
    assert lines[at + 1:at + 4] == ["    graph: map tasks 2/2 (5.5 MB), reduce tasks 4/4",
                                    "    iterate x10: map tasks 40/40 (20.0 MB), reduce tasks 40/40",
                                    "    ranks: map tasks 4/4 (2.0 MB), reduce tasks 3/4"]
    data = summary_dict(snap)
    assert data["map"] == {"done": 46, "total": 46, "bytes": 27_500_000}
    assert data["reduce"] == {"done": 47, "total": 48}
    assert data["step_tasks"][-1] == {"step": 12, "name": "ranks", "map": {"done": 4, "total": 4, "bytes": 2_000_000},
                                      "reduce": {"done": 3, "total": 4}}
    one = dataclasses.replace(DONE, step_tasks=(StepTasks(1, "job", 12, 12, 96_000_000, 4, 4),))
    assert [line for line in summary_lines(one) if "map tasks" in line] == [
        "  map tasks 12/12 (96.0 MB), reduce tasks 4/4"]  # a one-step job: one line, as before


def test_status_shows_a_multi_step_jobs_step():
    from mrctl.backends.fleet import ClusterStatus, format_status

    status = ClusterStatus("c1", "pagerank", "20261129-1", "map", "running", 1, 4, 0, 4, 3.0, (), (),
                           step="step 3/12 (iterate, iteration 2/10)")
    assert format_status([status]).splitlines()[0] == (
        "cluster c1  job pagerank (20261129-1)  step 3/12 (iterate, iteration 2/10): map  state running, 3s")
