"""Spill directories belong to the run that made them: its master removes its own at the end,
however the run ends, except when it is killed outright (SIGKILL, the OOM killer); then
`mrctl down`, or the next run, removes it, and `mrctl doctor` reports it.

Layout (mrctl.master.spill writes the partition and output files):

    $TMPDIR/mrctl-spill-<run id>-<random>/      (0700, tempfile.mkdtemp; TMPDIR, else /tmp)
        owner.json    {"pid": 4242, "started": 123456, "boot_id": "<kernel boot id>", "run": "<run id>"}
        <job>.part-<r>, <job>.out-<r>

The owner is the master's process, named by pid *and* start time within one boot (as the local
backend's records name theirs, mrctl.backends.local_registry), so a recycled pid never passes
for it. A directory is stray when its owner is no longer running, or when it has had no owner
file for UNOWNED_GRACE_S (a master killed between making it and naming itself). Only this
user's directories named so, directly in the temp dir, are ever removed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mrctl.backends import local_registry
from mrctl.backends.local_registry import Process

log = logging.getLogger(__name__)

PREFIX = "mrctl-spill-"
OWNER = "owner.json"
UNOWNED_GRACE_S = 60.0


def create(run: str) -> Path:
    """A new spill directory for run `run`, owned by this process (the master)."""
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{run}-"))
    owner = {"run": run, "pid": os.getpid(), "started": Process.of(os.getpid(), "master").started,
             "boot_id": local_registry.boot_id()} if local_registry.supported() else {"run": run}
    staged = folder / f".{OWNER}"
    staged.write_text(json.dumps(owner))
    staged.replace(folder / OWNER)  # whole or absent: a cleaner never reads half of it
    return folder


@dataclass(frozen=True)
class Stray:
    """A spill directory whose master is gone."""

    path: Path
    run: str  # "" when it has no readable owner file
    pid: int | None
    size: int  # bytes of its files


def strays(root: Path | None = None) -> list[Stray]:
    """The stray spill directories in `root` (default: the temp dir); none where processes
    cannot be told apart (no Linux /proc), since a live run's must never go."""
    if not local_registry.supported():
        return []
    root = root or Path(tempfile.gettempdir())
    try:
        candidates = sorted(p for p in root.glob(f"{PREFIX}*") if _ours(p))
    except OSError:
        return []
    return [stray for p in candidates if (stray := _stray(p)) is not None]


def remove_strays(root: Path | None = None) -> list[Stray]:
    """Remove the stray spill directories in `root` (default: the temp dir); the ones removed.
    One that cannot be removed is logged, never raised: this is housekeeping."""
    removed = []
    for stray in strays(root):
        try:
            shutil.rmtree(stray.path)
        except OSError as exc:
            log.warning("could not remove the stray spill directory %s: %s", stray.path, exc)
            continue
        log.info("removed %s", describe(stray))
        removed.append(stray)
    return removed


def describe(stray: Stray) -> str:
    whose = f"run {stray.run}, master pid {stray.pid} gone" if stray.run else "no owner"
    return f"stray spill directory {stray.path} ({whose}, {stray.size / 1e6:.1f} MB)"


def _ours(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()  # lstat: a symlink is no dir


def _stray(path: Path) -> Stray | None:
    try:
        owner = _owner(path)
        if owner is None:  # none yet, or unreadable: stray once old enough to not be in the making
            return None if time.time() - path.stat().st_mtime < UNOWNED_GRACE_S else Stray(path, "", None, _size(path))
        run, master, boot = owner
        if local_registry.running_here(master, boot):
            return None
        return Stray(path, run, master.pid, _size(path))
    except OSError:
        return None  # removed meanwhile (by its own master, or another cleaner)


def _owner(path: Path) -> tuple[str, Process, str] | None:
    try:
        owner = json.loads((path / OWNER).read_text())
        return str(owner["run"]), Process(int(owner["pid"]), int(owner["started"]), "master"), str(owner["boot_id"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
