"""Helpers for tests that watch real processes: a child's stderr, and /proc."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


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
