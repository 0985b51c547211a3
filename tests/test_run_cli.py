"""`mrctl run` as a user runs it, in a subprocess against real containers: signals at several
moments, the live view under a pseudo-terminal (pty + the pyte terminal emulator), plain
output without a TTY, --json."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, corpus_files, sequential_wordcount
from jobs import SLOW
from procs import read_until

from mrctl.observe.history import History

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("clean_docker")]
ANSI = "\x1b["


def slow_spec(tmp_path, workers: int = 2) -> str:
    (tmp_path / "job.py").write_text(SLOW)
    spec = tmp_path / "slow.yaml"
    spec.write_text(
        "name: slow\n"
        f"input: {corpus_files()[0]}\n"
        "job: {module: job.py, mapper: SlowMapper, reducer: SlowReducer, combiner: SumReducer}\n"
        f"workers: {workers}\nreducers: 3\nchunk_size: 64KiB\n"
        f"output: {tmp_path / 'out.json'}\n"
    )
    return str(spec)

# From the signal to the process's exit: the teardown force-removes the containers and the
# network in parallel (a few seconds here), with room for a loaded machine; a hang waits out
# the 60 s communicate.
TEARDOWN_S = 30


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mrctl", "run", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("moment", ["phase: starting cluster", "phase: map", "phase: reduce"])
def test_signal_stops_the_run_cleanly(tmp_path, docker_host, sig, code, moment):
    proc = start(slow_spec(tmp_path), "--plain")
    read_until(proc, moment)
    if moment == "phase: map":
        time.sleep(0.5)  # let workers be in the middle of tasks
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert time.monotonic() - sent < TEARDOWN_S, "teardown took too long"
    assert "interrupted" in err or "SIG" in err
    assert not (tmp_path / "out.json").exists()
    assert not list(tmp_path.glob(".out.json.*"))
    with History() as history:  # every run leaves a record, an interrupted one too
        run = history.get("slow")
    assert (run.status, run.exit_code) == ("interrupted", code) and time.time() - run.started_at < 120
    # clean_docker: every container and network of the run is gone


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_engine_is_asked_for_its_version_is_an_interrupted_run(tmp_path, sig, code):
    """docker-py wraps whatever its version probe raises: a signal there once ended the run as a
    lost engine (exit 3). An engine that accepts and never answers holds the run in the probe."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as stalled:
        proc = start(slow_spec(tmp_path), "--plain", "--docker-host", f"tcp://127.0.0.1:{stalled.getsockname()[1]}")
        stalled.settimeout(60)
        conn, _ = stalled.accept()  # the run is now waiting for the engine's answer
        with conn:
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "cannot reach the Docker engine" not in err and "interrupted" in err, err
    assert not (tmp_path / "out.json").exists()


def test_second_ctrl_c_still_tears_everything_down(tmp_path, docker_host):
    proc = start(slow_spec(tmp_path), "--plain")
    read_until(proc, "phase: map")
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)  # the first teardown is under way
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < TEARDOWN_S
    assert not (tmp_path / "out.json").exists() and not list(tmp_path.glob(".out.json.*"))
    # clean_docker: every container and network of the run is gone


def test_plain_output_without_a_tty_has_no_ansi_and_a_summary(tmp_path):
    out = tmp_path / "wc.json"
    proc = subprocess.run([sys.executable, "-m", "mrctl", "run", "jobspecs/wordcount.yaml",
                           "--input", str(corpus_files()[1]), "--output", str(out), "--workers", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert ANSI not in proc.stderr and ANSI not in proc.stdout
    assert "phase: map" in proc.stderr and "succeeded" in proc.stderr and f"output: {out}" in proc.stderr
    assert out.read_text(encoding="utf-8") == sequential_wordcount([corpus_files()[1]])


def test_json_flag_prints_only_the_summary_on_stdout(tmp_path):
    out = tmp_path / "wc.tsv"
    proc = subprocess.run([sys.executable, "-m", "mrctl", "run", "jobspecs/wordcount.yaml", "--json",
                           "--input", str(corpus_files()[2]), "--output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "succeeded" and summary["output_path"] == str(out)
    assert summary["map"]["done"] == summary["map"]["total"] > 0 and summary["reduce"]["total"] == 4
    assert set(summary["phase_seconds"]) >= {"starting", "map", "reduce", "output", "teardown"}
    expected = json.loads(sequential_wordcount([corpus_files()[2]]))
    rows = dict(line.split("\t") for line in out.read_text(encoding="utf-8").splitlines())
    assert {k: int(v) for k, v in rows.items()} == expected


def _screens_under_pty(command: list[str], env: dict[str, str], columns: int = 120,
                       lines: int = 45, timeout_s: float = 180) -> tuple[int, list[str]]:
    """Run `command` on a pseudo-terminal (Python's pty), replaying its output on a terminal
    emulator (pyte); returns the exit code and the screen after each burst of output."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    import pyte

    screen = pyte.Screen(columns, lines)
    stream = pyte.ByteStream(screen)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdin=follower, stdout=follower,
                            stderr=follower, start_new_session=True)
    os.close(follower)
    screens, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.3)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not data:
                    break
                stream.feed(data)
                screens.append("\n".join(screen.display))
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), screens
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        os.close(leader)


def test_live_view_under_a_pseudo_terminal(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    code, screens = _screens_under_pty([sys.executable, "-m", "mrctl", "run", slow_spec(tmp_path, 3)],
                                       {**env, "TERM": "xterm-256color"})
    assert code == 0, screens[-1] if screens else "no output"
    live = [s for s in screens if "phase: map" in s and "worker-1" in s]
    assert live, "the live view never showed the map phase with its workers"
    screen = live[-1]
    assert "tasks" in screen and "heartbeat" in screen and "reduce" in screen
    assert any(state in screen for state in ("mapping", "idle", "reducing"))
    assert "succeeded" in screens[-1]


def _all_containers() -> set[str]:
    """Every container on the engine that no mrctl cluster owns: an image build's own are
    unlabelled; clusters that other runs start meanwhile (labelled) are not this test's business."""
    lines = subprocess.run(["docker", "ps", "-a", "--format", '{{.ID}} {{.Label "mrctl.cluster"}}'],
                           capture_output=True, text=True).stdout.splitlines()
    return {line.split()[0] for line in lines if len(line.split()) == 1}


def _dangling_images() -> set[str]:
    """Untagged images whose steps came after mrctl's base image (they carry its label): what a
    worker image build that did not finish would leave."""
    return set(subprocess.run(["docker", "images", "-q", "--no-trunc", "--filter", "dangling=true",
                               "--filter", "label=mrctl.image=base"], capture_output=True, text=True).stdout.split())


@pytest.mark.parametrize("delay", [1.0, 15.0], ids=["during-wheel-build", "during-docker-build"])
def test_ctrl_c_while_the_worker_image_builds(tmp_path, docker_host, delay):
    # A copy of the project whose source differs by a comment, so its worker image is missing.
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info"))
    with (project / "mrctl" / "__init__.py").open("a") as f:
        f.write(f"# interrupted-build test {uuid.uuid4().hex}\n")
    before = _all_containers()
    dangling_before = _dangling_images()
    builds_before = {p.name for p in Path("/tmp").glob("mrctl-build-*")}
    proc = subprocess.Popen([sys.executable, "-m", "mrctl", "run", "jobspecs/wordcount.yaml", "--plain",
                             "--output", str(tmp_path / "wc.json")], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = "".join(read_until(proc, "building worker image"))
    tag = seen.split("building worker image ")[1].split()[0]
    time.sleep(delay)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, seen + err
    assert time.monotonic() - sent < TEARDOWN_S
    assert not (tmp_path / "wc.json").exists()
    deadline = time.monotonic() + 20  # the engine removes an interrupted build's containers
    while _all_containers() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _all_containers() - before, "the interrupted build left containers behind"
    assert docker_host.image_id(tag) is None, "an interrupted build must not leave a tagged image"
    # nor the step images it made (the copied wheels: 159 MB), untagged and of no use to anyone
    assert not _dangling_images() - dangling_before, "the interrupted build left untagged images"
    left = {p.name for p in Path("/tmp").glob("mrctl-build-*")} - builds_before
    assert not left, f"build context left behind: {left}"
