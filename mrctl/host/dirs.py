"""Where mrctl keeps files of its own on this host, by the XDG base directory rules (a relative
XDG_* value is ignored, as the rules say)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Downloads that can be fetched again (.debs, a redis-server): $XDG_CACHE_HOME/mrctl,
    else ~/.cache/mrctl."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "mrctl"


def cache_text(relative: str | Path, text: str) -> Path:
    """`text` in the file `relative` under the cache directory, written atomically (a temp file
    beside it, then a rename) unless it is there: for names that their content decides."""
    path = cache_dir() / relative
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    return path


def cache_lock_path(name: str) -> Path:
    return cache_dir() / f".{name}.lock"


@contextlib.contextmanager
def cache_lock(name: str, on_wait: Callable[[str], None] = log.info) -> Iterator[None]:
    """Hold the cache's lock `name` (an flock, released when the holder dies): one process
    fetches or builds a thing at a time, and the others, waiting, then find it made."""
    path = cache_lock_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait(f"another mrctl process is fetching or building {name}: waiting ...")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def state_dir() -> Path:
    """What must outlive a process but not a cluster (passwords of running clusters, records of
    local ones): $XDG_STATE_HOME/mrctl, else ~/.local/state/mrctl."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "mrctl"


def _xdg(variable: str, default: str) -> Path:
    base = os.environ.get(variable, "")
    return Path(base) if os.path.isabs(base) else Path.home() / default


# What mrctl keeps in the state directory is this user's alone: the run history (params, spec
# texts, tracebacks), cluster passwords, records of local clusters.
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def private_state_dir() -> Path:
    """The state directory, created 0700 (or tightened to it: see make_private)."""
    return make_private(state_dir(), PRIVATE_DIR)


def make_private(path: Path, mode: int, create: bool = True) -> Path:
    """Create `path` (a directory for PRIVATE_DIR, else an empty file) with `mode`, or take
    away the group and other bits of one that exists, logging a warning that names it and its
    old mode (so a loose mode is reported once: the next look finds it tight). Missing parents
    are created as the umask says, except a directory's own. With `create` False, a missing
    file is FileNotFoundError, not made."""
    if mode == PRIVATE_DIR:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode)  # the umask can only take bits away from 0700
    elif create:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, mode))
    old = stat.S_IMODE(path.stat().st_mode)
    if old & 0o077:
        os.chmod(path, old & ~0o077)
        log.warning("%s was %s, readable by other users: made it %s (mrctl keeps it private)",
                    path, oct(old)[2:].zfill(4), oct(old & ~0o077)[2:].zfill(4))
    return path


def loose_modes(paths: list[Path]) -> list[tuple[Path, int]]:
    """(path, mode) of each path that exists with group or other permission bits."""
    found = []
    for path in paths:
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode & 0o077 and not path.is_symlink():
                found.append((path, mode))
    return found
