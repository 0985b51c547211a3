"""Helpers for tests that watch real processes: a child's stderr, and /proc."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT


def run_mrctl(*args: object, check: bool = True, env: dict[str, str] | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m mrctl ARGS` in the repository, as a user runs it; with `check`, it must exit 0."""
    proc = subprocess.run([sys.executable, "-m", "mrctl", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def read_until(proc: subprocess.Popen, needle: str, timeout: float = 120) -> list[str]:
    """The stderr lines of `proc` up to the first one containing `needle`."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"never saw {needle!r}; got:\n{''.join(seen)}")


def children_of(pid: int) -> dict[int, tuple[int, str]]:
    """pid -> (start time, command line) of the live children of `pid`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = (int(fields[19]), cmd)
    return found
