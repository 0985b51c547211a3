"""Programs unpacked from the host's Debian mirror into mrctl's cache (mrctl.images.fetched), as
pytest-xdist's workers ask for them on a bare machine: several processes at once, one fetch."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

import pytest
from conftest import ROOT
from procs import read_until

from mrctl.backends.redis_server import PROGRAM
from mrctl.host.dirs import cache_lock_path
from mrctl.images import fetched

# A process asking for redis-server's copy, as the local backend and the tests' redis do.
OBTAIN = """
import sys
from mrctl.images import fetched
from mrctl.backends.redis_server import PROGRAM
print(fetched.obtain(PROGRAM, lambda message: print(message, file=sys.stderr, flush=True)).root)
"""


@pytest.mark.slow
def test_processes_asking_at_once_get_one_copy_fetched_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache: nothing fetched yet, no folder
    folder = fetched.folder(PROGRAM)
    assert not folder.exists()
    lock_path = cache_lock_path(PROGRAM.name)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:  # this test fetches first: both others must wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        procs = [subprocess.Popen([sys.executable, "-c", OBTAIN], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
        try:
            for proc in procs:
                read_until(proc, "another mrctl process is fetching or building redis-server", timeout=60)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        outputs = [proc.communicate(timeout=300) for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outputs]
    roots = {out.strip() for out, _ in outputs}
    assert len(roots) == 1, roots
    assert sum("is not installed: fetching it from" in err for _, err in outputs) == 1, outputs
    assert [p.name for p in folder.iterdir()] == [os.path.basename(roots.pop())]
    copy = fetched.find(PROGRAM)
    version = subprocess.run([copy.path(PROGRAM.marker), "--version"], env={**os.environ, **copy.env},
                             capture_output=True, text=True, timeout=10)
    assert version.stdout.startswith("Redis server v="), version.stderr


def test_a_half_unpacked_copy_is_not_taken_for_a_complete_one(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    stray = fetched.folder(PROGRAM) / ".unpacking-killed" / PROGRAM.marker  # a fetch killed half-way
    stray.parent.mkdir(parents=True)
    stray.write_text("")
    assert fetched.find(PROGRAM) is None
