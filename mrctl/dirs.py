"""Where mrctl keeps files of its own on this host, by the XDG base directory rules (a relative
XDG_* value is ignored, as the rules say)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Downloads that can be fetched again (.debs, a redis-server): $XDG_CACHE_HOME/mrctl,
    else ~/.cache/mrctl."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "mrctl"


def state_dir() -> Path:
    """What must outlive a process but not a cluster (passwords of running clusters, records of
    local ones): $XDG_STATE_HOME/mrctl, else ~/.local/state/mrctl."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "mrctl"


def _xdg(variable: str, default: str) -> Path:
    base = os.environ.get(variable, "")
    return Path(base) if os.path.isabs(base) else Path.home() / default
