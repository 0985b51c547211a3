"""Where the local backend's redis-server comes from: the host's PATH, else a copy that mrctl
unpacked from the host's Debian mirror into its cache (no apt, no root), with the shared
libraries the host lacks beside it.

The copy is unpacked into a temporary directory and renamed into place, so a half-finished
fetch is never mistaken for a usable one.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mrctl import debian, rootfs
from mrctl.dirs import cache_dir
from mrctl.errors import InfraError

log = logging.getLogger(__name__)

PACKAGE = "redis-server"
# Never unpacked beside the fetched binary: the host's own C library must be the one used.
HOST_ONLY = ("libc6", "libc-bin")


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


def fetched_root() -> Path:
    return cache_dir() / "redis-server"


def find_redis_server() -> RedisServer | None:
    """redis-server on PATH, else a copy fetched earlier; None when there is neither."""
    exe = shutil.which("redis-server")
    if exe is not None:
        return RedisServer(exe, "PATH")
    for root in sorted(fetched_root().glob("*/"), reverse=True):
        if (root / "usr" / "bin" / "redis-server").exists():
            return _from_root(root)
    return None


def obtain_redis_server(on_progress: debian.Progress = log.info) -> RedisServer:
    """redis-server from PATH or the cache, fetching it from the host's Debian mirror if need be."""
    found = find_redis_server()
    if found is not None:
        return found
    try:
        source = debian.apt_source()
    except InfraError:
        raise InfraError("redis-server is not installed and this host has no Debian mirror to fetch "
                         "it from: install redis-server, or run with --backend docker") from None
    on_progress(f"redis-server is not installed: fetching it from {source.mirror} into "
                f"{fetched_root()} (once) ...")
    archive = debian.Archive(source, on_progress)
    skip = debian.installed_packages() | set(HOST_ONLY)
    packages = archive.closure([PACKAGE], skip=skip)
    version = next(p.version for p in packages if p.name == PACKAGE)
    debs = archive.download(packages)
    target = fetched_root() / f"{source.suite}-{version.replace(':', '_')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=target.parent))
    try:
        rootfs.unpack(debs, staging)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    server = _from_root(target)
    on_progress(f"fetched {server.version()}")
    return server


def _from_root(root: Path) -> RedisServer:
    libs = [str(d) for d in (root / "usr" / "lib").glob("*-linux-gnu*") if d.is_dir()]
    libs.append(str(root / "usr" / "lib"))
    return RedisServer(str(root / "usr" / "bin" / "redis-server"), str(root),
                       {"LD_LIBRARY_PATH": os.pathsep.join(libs)})
