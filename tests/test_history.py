"""The run history (mrctl.observe.history) under trouble: writers from several processes at once, a
damaged file and a locked one. A run never fails for its history: it warns, naming the file;
`mrctl history` cannot do without it and exits 3, naming the file.

Each test has a history file of its own (MRCTL_HISTORY), given to the processes it starts.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT
from jobs import write_paced_spec

from mrctl.observe.history import BUSY_TIMEOUT_S, History

TIMEOUT_S = 180


def mrctl(*args: str, history: Path, cwd: Path = ROOT, wait: str | None = None) -> subprocess.CompletedProcess:
    """`mrctl ARGS` on `history`; `wait`: MRCTL_HISTORY_WAIT, how long a held history is waited for."""
    env = {**os.environ, "MRCTL_HISTORY": str(history), **({"MRCTL_HISTORY_WAIT": wait} if wait is not None else {})}
    return subprocess.run([sys.executable, "-m", "mrctl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=env)


def small_run(tmp: Path, name: str) -> Path:
    """A quick local word count (no pacing), in a folder of its own."""
    folder = tmp / name
    folder.mkdir()
    return write_paced_spec(folder, name, "local", lines=200, mapper="WordMapper")


@pytest.mark.slow
def test_two_runs_ending_at_once_are_both_recorded(tmp_path):
    history = tmp_path / "history.sqlite"
    specs = [small_run(tmp_path, f"twin-{i}") for i in (1, 2)]
    env = {**os.environ, "MRCTL_HISTORY": str(history)}
    runs = [subprocess.Popen([sys.executable, "-m", "mrctl", "run", str(spec), "--json"], cwd=spec.parent,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for spec in specs]
    outputs = [run.communicate(timeout=TIMEOUT_S) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    with History(history) as h:
        recorded = {row.name: row.status for row in h.runs(10)}
    assert recorded == {"twin-1": "succeeded", "twin-2": "succeeded"}


WRITER = textwrap.dedent("""
    import sys, time
    from mrctl.observe.history import History
    from mrctl.observe.record import RunRecord

    who, count = sys.argv[1], int(sys.argv[2])
    with History() as h:
        for i in range(count):
            h.record(RunRecord(f"{who}-{i}", who, "succeeded", 0, time.time(), 0.1, "local", 1))
""")


OPENER = "import sys\nfrom pathlib import Path\nfrom mrctl.observe.history import History\n" \
         "with History(Path(sys.argv[1])) as h:\n    h.runs(1)\n"


@pytest.mark.slow
def test_processes_making_a_new_history_at_once_all_open_it(tmp_path):
    """Three processes open a history file that does not exist yet at the same moment, 25 times
    over: SQLite may refuse one at once ("database is locked", no busy wait) while another
    turns on WAL mode; it is tried again, never an error (it was, 1 time in 60, in CI)."""
    for i in range(25):
        path = tmp_path / f"h{i}.sqlite"
        openers = [subprocess.Popen([sys.executable, "-c", OPENER, str(path)], stderr=subprocess.PIPE, text=True)
                   for _ in range(3)]
        errors = [o.communicate(timeout=TIMEOUT_S)[1] for o in openers]
        assert [o.returncode for o in openers] == [0, 0, 0], errors


def test_writers_in_two_processes_lose_nothing(tmp_path):
    """Many records written at the same moments from two processes: every one is kept."""
    env = {**os.environ, "MRCTL_HISTORY": str(tmp_path / "history.sqlite")}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, who, "60"], env=env, stderr=subprocess.PIPE, text=True)
               for who in ("a", "b")]
    errors = [w.communicate(timeout=TIMEOUT_S)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    with History(tmp_path / "history.sqlite") as h:
        ids = {row.job_id for row in h.runs(500)}
    assert ids == {f"{who}-{i}" for who in ("a", "b") for i in range(60)}


@pytest.mark.slow
def test_a_damaged_history_warns_and_the_run_succeeds(tmp_path):
    history = tmp_path / "history.sqlite"
    history.write_bytes(b"this is no SQLite database\x00\xff" * 200)
    spec = small_run(tmp_path, "damaged")
    run = mrctl("run", str(spec), "--plain", history=history, cwd=spec.parent)
    assert run.returncode == 0, run.stderr
    assert (spec.parent / "out.json").exists()
    assert "the run was not recorded in the history" in run.stderr and str(history) in run.stderr, run.stderr
    listed = mrctl("history", history=history)
    assert listed.returncode == 3, listed
    assert str(history) in listed.stderr and "damaged" in listed.stderr, listed.stderr
    assert "Traceback" not in listed.stderr


@pytest.mark.slow
def test_a_locked_history_warns_and_the_run_succeeds(tmp_path):
    history = tmp_path / "history.sqlite"
    with History(history):
        pass  # a history as mrctl makes it (WAL journal)
    holder = sqlite3.connect(history, isolation_level=None)
    try:
        # Another process holds it exclusively, readers shut out too (a plain BEGIN EXCLUSIVE
        # in WAL mode still lets readers in)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        spec = small_run(tmp_path, "locked")
        run = mrctl("run", str(spec), "--plain", history=history, cwd=spec.parent, wait="1.5")
        assert run.returncode == 0, run.stderr
        assert (spec.parent / "out.json").exists()
        warning = run.stderr
        assert "the run was not recorded in the history" in warning and str(history) in warning, warning
        assert "locked" in warning and "for over 1.5s" in warning, warning
        started = time.monotonic()
        listed = mrctl("history", history=history)  # the default wait
        assert time.monotonic() - started >= BUSY_TIMEOUT_S
        assert listed.returncode == 3, listed
        assert str(history) in listed.stderr and "locked" in listed.stderr, listed.stderr
        assert f"for over {BUSY_TIMEOUT_S:g}s" in listed.stderr, listed.stderr
    finally:
        holder.close()
    assert mrctl("history", history=history).returncode == 0, "the history works again once released"


@pytest.mark.parametrize("wait", ["soon", "-1", "inf", "nan"])
def test_a_wait_that_is_not_seconds_is_refused_naming_it(tmp_path, wait):
    listed = mrctl("history", history=tmp_path / "history.sqlite", wait=wait)
    assert listed.returncode == 3, listed
    assert f"MRCTL_HISTORY_WAIT={wait!r}" in listed.stderr and "seconds" in listed.stderr, listed.stderr
    assert "Traceback" not in listed.stderr
