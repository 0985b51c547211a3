"""Where the local backend's redis-server comes from: the host's PATH, else a copy that mrctl
unpacked from the host's Debian mirror into its cache (mrctl.images.fetched: no apt, no root), with the
shared libraries the host lacks beside it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mrctl.errors import InfraError
from mrctl.images import fetched

if TYPE_CHECKING:
    from mrctl.images import debian

log = logging.getLogger(__name__)

PROGRAM = fetched.Program(
    "redis-server", ("redis-server",), "usr/bin/redis-server",
    no_mirror="redis-server is not installed and this host has no Debian mirror to fetch it from: "
              "install redis-server, or run with --backend docker")


@dataclass(frozen=True)
class RedisServer:
    """An executable redis-server and the environment it needs."""

    path: str
    origin: str  # "PATH" or the cache directory it was unpacked into
    env: dict[str, str] = field(default_factory=dict)  # LD_LIBRARY_PATH for a fetched copy

    def version(self) -> str:
        """`redis-server --version`; InfraError when it does not run here."""
        try:
            out = subprocess.run([self.path, "--version"], capture_output=True, text=True,
                                 env={**os.environ, **self.env}, timeout=10)
        except (OSError, subprocess.SubprocessError) as exc:
            raise InfraError(f"{self.path} does not run: {exc}") from None
        if out.returncode != 0:
            raise InfraError(f"{self.path} does not run: {out.stderr.strip()[-500:]}")
        return out.stdout.strip()


def find_redis_server() -> RedisServer | None:
    """redis-server on PATH, else a copy fetched earlier; None when there is neither."""
    exe = shutil.which("redis-server")
    if exe is not None:
        return RedisServer(exe, "PATH")
    copy = fetched.find(PROGRAM)
    return None if copy is None else _from_copy(copy)


def obtain_redis_server(on_progress: debian.Progress = log.info) -> RedisServer:
    """redis-server from PATH or the cache, fetching it from the host's Debian mirror if need be."""
    found = find_redis_server()
    if found is not None:
        return found
    server = _from_copy(fetched.obtain(PROGRAM, on_progress))
    on_progress(f"using {server.version()}")
    return server


def _from_copy(copy: fetched.Copy) -> RedisServer:
    return RedisServer(copy.path(PROGRAM.marker), str(copy.root), copy.env)
