"""Every run leaves a record: the attempt log the task protocol writes (real redis-server), and
the record a real run leaves in the history, whatever its end."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import word_counts
from jobs import HANG_SLEEP, HANGS, RAISES, WORDCOUNT, make_spec

from mrctl.broker.meta import JobMeta
from mrctl.errors import JobFailed
from mrctl.master.driver import run_job
from mrctl.observe.history import History
from mrctl.observe.record import AttemptBook

JOB = "rec"


def _book(broker) -> dict[tuple[str, int], object]:
    book = AttemptBook(offset_s=0.0)
    book.add(1, broker.take_attempt_log(JOB))
    return {(a.tid, a.attempt): a for a in book.attempts()}


def _publish(broker, *tids: str) -> None:
    broker.publish_job(JOB, JobMeta(state="running", max_attempts=4), {"job.py": ""})
    for tid in tids:
        broker.add_map_task(JOB, tid, {"kind": "map"}, b"x\n")


def test_each_attempt_logs_its_start_and_how_it_ended(broker):
    _publish(broker, "m:0", "m:1", "m:2")
    first = broker.claim_task(JOB, "w1", 10, 60)  # m:0: fails, then commits on w2
    broker.fail_attempt(JOB, "m:0", first.attempt, 4, "ZeroDivisionError: division by zero", "Traceback ...")
    broker.claim_task(JOB, "w2", 10, 60)  # m:1
    again = broker.claim_task(JOB, "w2", 10, 60)  # m:2
    retry = broker.claim_task(JOB, "w3", 10, 60)  # m:0 attempt 2
    assert (retry.tid, retry.attempt, again.tid) == ("m:0", 2, "m:2")
    assert broker.commit_map(JOB, "m:0", 2, "w3", {0: b"a"}, {"maps_done": 1})
    broker.add_backup(JOB, "m:1")
    backup = broker.claim_task(JOB, "w3", 10, 60)  # m:1 attempt 2, a backup
    assert broker.commit_map(JOB, "m:1", backup.attempt, "w3", {0: b"b"}, {"maps_done": 1})
    assert not broker.commit_map(JOB, "m:1", 1, "w2", {0: b"late"}, {"maps_done": 1})  # the beaten original
    broker.fail_attempt(JOB, "m:2", 1, 4, "worker w2 died", "", "lost")

    found = _book(broker)
    assert {k: (a.worker, a.outcome, a.backup) for k, a in found.items()} == {
        ("m:0", 1): ("w1", "error", False), ("m:0", 2): ("w3", "committed", False),
        ("m:1", 1): ("w2", "refused", False), ("m:1", 2): ("w3", "committed", True),
        ("m:2", 1): ("w2", "lost", False),
    }
    assert found["m:0", 1].error.startswith("ZeroDivisionError") and found["m:0", 1].traceback == "Traceback ..."
    assert found["m:1", 1].error.startswith("cancelled")  # cancelled by the backup's commit, then refused
    assert all(a.end is not None and a.end >= a.start for a in found.values())
    assert broker.take_attempt_log(JOB) == []  # taken out of Redis: the log never grows with the job


def test_a_reaped_zombie_runs_until_its_refused_commit(broker):
    _publish(broker, "m:0")
    zombie = broker.claim_task(JOB, "w1", lease_s=0.1, timeout_s=60)
    time.sleep(0.25)
    assert broker.requeue_expired(JOB, max_attempts=4, task_timeout=60) == 1
    broker.claim_task(JOB, "w2", 10, 60)
    time.sleep(0.05)
    assert not broker.commit_map(JOB, "m:0", zombie.attempt, "w1", {0: b"z"}, {"maps_done": 1})
    found = _book(broker)
    first = found["m:0", 1]
    assert (first.outcome, first.error.split(":")[0]) == ("refused", "lost")
    assert found["m:0", 2].outcome == "running" and found["m:0", 2].end is None
    assert first.end > found["m:0", 2].start  # it ran on past its reaping


@pytest.mark.slow
def test_a_run_with_a_timeout_is_recorded_with_every_attempt(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    data = tmp_path / "input.txt"
    data.write_text("alpha beta\n" * 100 + "needle gamma\n" + "beta\n" * 100)
    spec = make_spec(tmp_path, HANGS.format(markers=str(markers), needle="needle", hang=HANG_SLEEP), [data],
                     mapper="HangingMapper", task_timeout=2.0, workers=2, chunk_size=1024)
    records = []
    final = run_job(spec, on_record=records.append)
    (run,) = records
    assert (run.job_id, run.status, run.exit_code) == (final.job_id, "succeeded", 0)
    committed = [a for a in run.attempts if a.outcome == "committed"]
    assert sorted(a.tid for a in committed) == sorted(
        [f"m:{i}" for i in range(final.map.total)] + [f"r:{r}" for r in range(spec.reducers)])
    timed_out = [a for a in run.attempts if a.outcome == "timeout"]
    assert len(timed_out) == final.timeouts >= 1 and "task_timeout" in timed_out[0].error
    assert {a.worker for a in run.attempts} <= {"worker-1", "worker-2"}
    # attempts are timed by Redis's clock, the barrier by the master's: 100 ms for the offset's
    # error (half the shortest of three round trips, which a loaded machine can stretch)
    barrier = run.barriers[0]
    assert len(run.barriers) == 1 and all(a.start >= barrier - 0.1 for a in run.attempts if a.phase == "reduce")
    assert all(a.end <= barrier + 0.1 for a in committed if a.phase == "map")
    with History() as h:
        stored = h.get(run.job_id)
    assert stored == run  # what the history keeps is the record, whole
    assert json.loads(spec.output_path.read_text()) == dict(sorted(word_counts([data]).items()))


@pytest.mark.slow
def test_a_failed_run_is_recorded_with_each_traceback_and_shown(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    data = tmp_path / "input.txt"
    data.write_text("fine line\n" * 50 + "the poison line\n")
    spec = make_spec(tmp_path, RAISES.format(markers=str(markers), needle="poison"), [data],
                     mapper="FaultyMapper", max_attempts=2, workers=1)
    with pytest.raises(JobFailed) as info:
        run_job(spec)
    shown = subprocess.run([sys.executable, "-m", "mrctl", "show", info.value.snapshot.job_id, "--json"],
                           capture_output=True, text=True, check=True)
    run = json.loads(shown.stdout)
    assert (run["status"], run["exit_code"]) == ("failed", 1)
    failed = [a for a in run["attempts"] if a["outcome"] == "error"]
    assert len(failed) == 2 and all("return 1 / 0" in a["traceback"] for a in failed)
    text = subprocess.run([sys.executable, "-m", "mrctl", "show", "test"], capture_output=True, text=True,
                          check=True).stdout
    assert text.count("ZeroDivisionError") >= 2 and "failed: m:0 attempt 2 on worker-1" in text
    listed = subprocess.run([sys.executable, "-m", "mrctl", "history", "--json"], capture_output=True,
                            text=True, check=True).stdout
    assert info.value.snapshot.job_id in [r["job_id"] for r in json.loads(listed)]


def test_an_inline_run_is_recorded_too(tmp_path):
    data = tmp_path / "input.txt"
    data.write_text("a b a\n")
    spec = make_spec(tmp_path, WORDCOUNT, [data], backend="inline")
    final = run_job(spec)
    with History() as h:
        run = h.get(final.job_id)
    assert run.status == "succeeded" and run.backend == "inline"
    assert sorted((a.tid, a.worker, a.outcome) for a in run.attempts) == sorted(
        [(f"m:{i}", "inline", "committed") for i in range(final.map.total)]
        + [(f"r:{r}", "inline", "committed") for r in range(spec.reducers)])
    assert len(run.barriers) == 1


def test_the_history_keeps_the_newest_runs_and_finds_them_by_id_prefix_or_name(tmp_path, monkeypatch):
    from mrctl.errors import MrctlError
    from mrctl.observe import history
    from mrctl.observe.record import RunRecord

    monkeypatch.setattr(history, "KEEP_RUNS", 3)
    runs = [RunRecord(f"20261129-0800{i:02d}-ab{i:02d}", "even" if i % 2 == 0 else "odd", "succeeded", 0,
                      started_at=1000.0 + i, elapsed=1.0, backend="local", workers=2) for i in range(5)]
    with History(tmp_path / "h.sqlite") as h:
        for run in runs:
            h.record(run)
        assert [r.job_id for r in h.runs(10)] == [r.job_id for r in runs[:1:-1]]  # the newest three
        assert h.get().job_id == runs[4].job_id and h.get("odd").job_id == runs[3].job_id
        assert h.get(runs[2].job_id[:-1]).job_id == runs[2].job_id  # a unique start of an id
        with pytest.raises(MrctlError, match="matches 3 runs"):
            h.get("20261129")
        with pytest.raises(MrctlError, match="no run 'gone'"):
            h.get("gone")


def test_show_counts_released_attempts_and_lists_lost_ones():
    from mrctl.observe.record import Attempt, RunRecord
    from mrctl.observe.run_view import format_run

    attempts = [Attempt(f"m:{i}", 1, "worker-1", 0.1 * i, 0.1 * i + 0.05, "committed") for i in range(4)]
    attempts += [Attempt("m:4", 1, "worker-1", 0.5, 0.6, "released"),
                 Attempt("m:5", 1, "worker-1", 0.5, 0.6, "released"),
                 Attempt("m:4", 2, "worker-2", 0.7, 0.8, "committed"),
                 Attempt("m:6", 1, "worker-2", 0.7, 0.9, "lost")]
    run = RunRecord("20261129-090000-aaaa", "batched", "succeeded", 0, started_at=1000.0, elapsed=1.0,
                    backend="local", workers=2, attempts=attempts)
    text = format_run(run)
    assert "released: 2 attempts handed back unstarted" in text
    assert "lost: m:6 attempt 1 on worker-2" in text and "released: m:4" not in text
