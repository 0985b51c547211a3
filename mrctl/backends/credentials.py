"""The Redis passwords of this user's clusters, one 0600 file each in the user's state directory.

`mrctl status` and tests read a cluster they did not start from another process; the password
is kept here rather than in a container label, where anyone who can `docker inspect` would read
it for as long as the container exists. Layout (the directory is 0700):

    $XDG_STATE_HOME/mrctl/clusters/<cluster>.json   (default ~/.local/state/mrctl/...)
    {"cluster": "<id>", "job_id": "<job id>", "password": "<hex>", "created": <epoch s>}

A file is written before the cluster's first container and removed by its teardown or by
`mrctl down`; `--keep` leaves it until `mrctl down`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

from mrctl.errors import InfraError
from mrctl.host.dirs import private_state_dir, state_dir


def cluster_file(cluster: str) -> Path:
    return state_dir() / "clusters" / f"{cluster}.json"


def save(cluster: str, job_id: str, password: str) -> Path:
    """Atomically write a cluster's record, readable by this user only (0600 in a 0700 dir)."""
    path = cluster_file(cluster)
    try:
        private_state_dir()
        path.parent.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path.parent, 0o700)  # mkdir's mode is masked by the umask, and may predate us
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{cluster}-")  # mkstemp: 0600
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"cluster": cluster, "job_id": job_id, "password": password,
                           "created": int(time.time())}, f)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise InfraError(f"cannot write the cluster's state file {path}: {exc}. "
                         "Set XDG_STATE_HOME to a writable directory.") from None
    return path


def redis_password(cluster: str) -> str | None:
    """The cluster's Redis password, or None when this user holds no record of it."""
    try:
        return str(json.loads(cluster_file(cluster).read_text())["password"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget(cluster: str) -> None:
    """Remove a cluster's record; gone already is fine."""
    with contextlib.suppress(FileNotFoundError):
        cluster_file(cluster).unlink()
