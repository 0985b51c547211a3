"""Issue 23, point 4: the master's disk. A full disk while the master spills or writes the
output ends the run with exit 3, a message naming the directory and about how much space was
needed, a failed run in the history, and nothing left on that disk; a spill directory whose
master was killed outright is reported by `mrctl doctor` and removed by `mrctl down` or by the
next run, while a live master's is never touched.

Real everything: small tmpfs filesystems mounted for the test (root can; a test that cannot
mount fails), `mrctl run` on the local backend in a subprocess (a real master, redis-server and
workers), a master killed with SIGKILL mid-spill. Each process gets a TMPDIR, history and state
dir of the test's own, and DOCKER_HOST pointing nowhere, so `down` sees only this test's
leftovers and never anyone's Docker clusters. Expected outputs come from plain Python.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import corpus_files
from procs import children_of
from test_spill import SHUFFLE  # the whole input through the shuffle

from mrctl.backends import spill_dirs
from mrctl.observe.history import History

NO_DOCKER = "unix:///nonexistent/docker.sock"


@pytest.fixture
def short_dir():
    """A directory with a short path (the session's temp dir, not tmp_path): a local cluster's
    Redis socket goes into TMPDIR, and a unix socket's path holds 107 bytes at most."""
    folder = Path(tempfile.mkdtemp(prefix="t-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def small_disk(short_dir):
    """mount(name, size): a small tmpfs of the test's own, unmounted afterwards."""
    mounted = []

    def mount(name: str, size: str = "4m") -> Path:
        point = short_dir / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", str(point)],
                              capture_output=True, text=True)
        assert done.returncode == 0, f"cannot mount a tmpfs for the test (root needed): {done.stderr}"
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=True)


def _job(folder: Path, copies: int) -> Path:
    """The shuffle job over the corpus repeated `copies` times (~3.3 MB each), local backend."""
    books = b"".join(p.read_bytes() for p in corpus_files())
    (folder / "data").mkdir()
    for i in range(copies):
        (folder / "data" / f"part{i}.txt").write_bytes(books)
    (folder / "shuffle.py").write_text(SHUFFLE)
    spec = folder / "shuffle.yaml"
    spec.write_text("name: shuffle\ninput: data/\njob: {module: shuffle.py, mapper: FirstWord, reducer: SortedLines}\n"
                    "reducers: 32\nchunk_size: 1MiB\nbackend: local\nworkers: 2\n")
    return spec


def _env(tmp_path: Path, tmpdir: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmpdir), "MRCTL_HISTORY": str(tmp_path / "history.sqlite"),
            "XDG_STATE_HOME": str(tmp_path / "state"), "DOCKER_HOST": NO_DOCKER}


def _mrctl(*args: str, env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrctl", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _expected(folder: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = collections.defaultdict(list)
    for path in sorted((folder / "data").iterdir()):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.split():
                found[line.split()[0].lower()].append(line)
    return {word: sorted(lines) for word, lines in sorted(found.items())}


def _last_run(tmp_path: Path):
    with History(tmp_path / "history.sqlite") as history:
        return history.get()


@pytest.mark.slow
def test_a_full_disk_while_spilling_is_exit_3_naming_the_place_recorded_and_cleaned(tmp_path, small_disk):
    """~26 MB shuffled through a 16 MiB Redis: the master spills, into a 4 MB TMPDIR."""
    spec = _job(tmp_path, copies=8)
    small = small_disk("tmp")
    run = _mrctl("run", spec.name, "--plain", "--redis-memory", "17mb", "-o", "out.json",
                 env=_env(tmp_path, small), cwd=tmp_path)
    assert run.returncode == 3, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    message = run.stderr.strip().splitlines()[-1]
    assert re.search(rf"no space left on the disk of {re.escape(str(small))}/mrctl-spill-\S+ \(.* free\) while "
                     r"spilling map output of partition \d+: this write needed [\d.]+ [kM]B, after [\d.]+ MB spilled "
                     r"so far", message), message
    assert "set TMPDIR to a directory on a larger disk" in message
    assert list(small.iterdir()) == [], "the spill files (or the cluster's temp dir) outlived the run"
    assert not (tmp_path / "out.json").exists() and not list(tmp_path.glob(".out.json.*"))
    record = _last_run(tmp_path)
    assert (record.status, record.exit_code) == ("failed", 3)
    assert "no space left on the disk of" in record.error and "spilled so far" in record.error


@pytest.mark.slow
def test_a_full_disk_while_writing_the_output_is_exit_3_with_its_size_and_no_partial_output(
        tmp_path, short_dir, small_disk):
    spec = _job(tmp_path, copies=2)
    small = small_disk("out", size="2m")
    run = _mrctl("run", spec.name, "--plain", "-o", str(small / "out.json"), env=_env(tmp_path, short_dir),
                 cwd=tmp_path)
    assert run.returncode == 3, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    message = run.stderr.strip().splitlines()[-1]
    found = re.search(rf"no space left on the disk of {re.escape(str(small))} \(.* free\) while writing the output "
                      r"out.json: the output needs about ([\d.]+) MB \(([\d.]+) MB written when it filled\)", message)
    assert found, message
    real = len(json.dumps(_expected(tmp_path), ensure_ascii=False).encode()) / 1e6  # what it would have taken
    assert 0.7 * real < float(found.group(1)) < 1.4 * real, (found.group(1), real)
    assert 1.5 < float(found.group(2)) <= 2.1  # the 2 MB filesystem, filled
    assert list(small.iterdir()) == [], "a partial output (or its temp file) was left behind"
    record = _last_run(tmp_path)
    assert (record.status, record.exit_code) == ("failed", 3) and "the output needs about" in record.error
    assert not list(short_dir.glob("mrctl-*")), "the run left a spill or cluster directory"


def _spill_dirs(tmpdir: Path) -> list[Path]:
    return sorted(tmpdir.glob(f"{spill_dirs.PREFIX}*"))


@pytest.mark.slow
def test_a_sigkilled_masters_spill_dir_is_reported_by_doctor_and_removed_by_down(tmp_path, short_dir):
    spec = _job(tmp_path, copies=8)
    tmpdir = short_dir
    env = _env(tmp_path, tmpdir)
    master = subprocess.Popen([sys.executable, "-m", "mrctl", "run", spec.name, "--plain", "--redis-memory", "17mb",
                               "-o", "out.json"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(tmpdir.glob(f"{spill_dirs.PREFIX}*/*.part-*")):  # it is spilling
            assert master.poll() is None and time.monotonic() < deadline, "the master never spilled"
            time.sleep(0.05)
        children = children_of(master.pid)
        master.kill()
        master.wait(timeout=10)
    finally:
        if master.poll() is None:
            master.kill()
    _wait_gone(children)
    [left] = _spill_dirs(tmpdir)
    assert list(left.glob("*.part-*")), "the killed master's spill files should still be there"

    doctor = _mrctl("doctor", "--json", env={**env, "DOCKER_HOST": "tcp://127.0.0.1:1"}, cwd=tmp_path)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    spill = checks["spill directories"]
    assert spill["status"] == "warn" and str(left) in spill["detail"] and f"master pid {master.pid} gone" in \
        spill["detail"], spill
    assert "mrctl down" in spill["fix"]
    assert left.is_dir(), "doctor only looks"

    down = _mrctl("down", env=env, cwd=tmp_path, timeout=120)
    assert down.returncode == 0, down.stderr
    assert f"removed stray spill directory {left}" in down.stderr, down.stderr
    assert not left.exists()
    assert list(tmpdir.iterdir()) == [], "down left something of the killed run in its TMPDIR"


def _wait_gone(children: dict[int, tuple[int, str]]) -> None:
    """The killed master's redis-server and workers follow it (their lifeline)."""
    deadline = time.monotonic() + 10
    while any(_start_time(pid) == started for pid, (started, _) in children.items()):
        assert time.monotonic() < deadline, "the killed master's children outlived it"
        time.sleep(0.05)


def _start_time(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


MAKE_SPILL_DIR = "import sys; from mrctl.backends import spill_dirs; print(spill_dirs.create(sys.argv[1]))"


def test_the_next_run_removes_spill_dirs_of_dead_masters_and_never_a_live_ones(tmp_path, short_dir):
    tmpdir = short_dir
    env = _env(tmp_path, tmpdir)
    # A master that made its spill dir and died (here: exited without removing it), and one
    # that lives: this test's own process, naming itself the owner of a dir in the same place
    dead = Path(subprocess.run([sys.executable, "-c", MAKE_SPILL_DIR, "dead-run"], env=env, capture_output=True,
                               text=True, check=True).stdout.strip())
    (dead / "j.part-0").write_bytes(b"x" * 1000)
    live = Path(subprocess.run([sys.executable, "-c", MAKE_SPILL_DIR, "live-run"], env=env, capture_output=True,
                               text=True, check=True).stdout.strip())
    owner = json.loads((live / spill_dirs.OWNER).read_text())
    me = spill_dirs.Process.of(os.getpid(), "master")
    (live / spill_dirs.OWNER).write_text(json.dumps({**owner, "pid": me.pid, "started": me.started}))
    unowned = tmpdir / f"{spill_dirs.PREFIX}half-made-abcd"  # killed before it named its owner
    unowned.mkdir()
    os.utime(unowned, (time.time() - 2 * spill_dirs.UNOWNED_GRACE_S,) * 2)

    spec = _job(tmp_path, copies=1)
    run = _mrctl("run", spec.name, "--plain", "--backend", "inline", "--reducers", "2", "-o", "out.json",
                 env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((tmp_path / "out.json").read_text(encoding="utf-8")) == _expected(tmp_path)
    assert not dead.exists() and not unowned.exists()
    assert live.is_dir(), "a live master's spill dir was removed"
    assert _spill_dirs(tmpdir) == [live]
