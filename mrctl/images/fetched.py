"""Debian packages unpacked into mrctl's cache: a program the host lacks (the local backend's
redis-server; the tests' browser), fetched from the host's Debian mirror with the libraries the
host lacks beside it, without apt, dpkg or root, and run with LD_LIBRARY_PATH.

    # <cache>/<name>/<suite>-<version>/   a complete copy (<version>: the first package's)
    # <cache>/<name>/.unpacking-*/        a fetch under way, renamed into place when complete
    # <cache>/.<name>.lock                flock'd by the one process fetching <name> (dirs.cache_lock)

A copy is unpacked into a temporary directory and renamed into place, so a half-finished fetch
is never mistaken for a usable one. Processes that ask at once (pytest-xdist's workers on a bare
machine) take turns on the lock: one fetches, the others wait and then find its copy.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mrctl.errors import InfraError
from mrctl.host.dirs import cache_dir, cache_lock

if TYPE_CHECKING:  # a copy already fetched is found without the Debian archive's code (python-debian)
    from mrctl.images import debian

log = logging.getLogger(__name__)

# Never unpacked beside a fetched program: the host's own C library must be the one used.
HOST_ONLY = ("libc6", "libc-bin")
STAGING_PREFIX = ".unpacking-"


@dataclass(frozen=True)
class Program:
    """What to fetch for one program, and how to tell that a copy of it is there."""

    name: str  # the cache folder, e.g. "redis-server"
    packages: tuple[str, ...]  # fetched with their dependencies; the first one's version names the copy
    marker: str  # a path that every complete copy has, e.g. "usr/bin/redis-server"
    no_mirror: str  # what a user whose host has no Debian mirror should do instead
    files: Mapping[str, str] = field(default_factory=dict)  # written into the copy (path -> text)
    leave_out: tuple[str, ...] = ()  # dependencies the program never loads where mrctl runs it


@dataclass(frozen=True)
class Copy:
    """A complete unpacked copy of a Program."""

    root: Path

    def path(self, relative: str) -> str:
        return str(self.root / relative)

    @property
    def env(self) -> dict[str, str]:
        """LD_LIBRARY_PATH: every directory of the copy that holds a shared library (some are
        private subdirectories, e.g. pulseaudio's, that their library finds by an absolute
        RUNPATH into /usr, which points at the host, not here)."""
        dirs = sorted({str(p.parent) for p in (self.root / "usr" / "lib").rglob("lib*.so*")})
        return {"LD_LIBRARY_PATH": os.pathsep.join(dirs)}


def folder(program: Program) -> Path:
    return cache_dir() / program.name


def find(program: Program) -> Copy | None:
    """The newest complete copy of `program` in the cache, else None (nothing is fetched)."""
    for root in sorted(folder(program).glob("[!.]*/"), reverse=True):
        if (root / program.marker).exists():
            return Copy(root)
    return None


def obtain(program: Program, on_progress: debian.Progress = log.info) -> Copy:
    """A copy of `program` from the cache, fetched from the host's Debian mirror if need be:
    one process fetches, any other asking meanwhile waits for it and takes its copy."""
    found = find(program)
    if found is not None:
        return found
    with cache_lock(program.name, on_progress):
        found = find(program)  # fetched by the process this one waited for
        if found is not None:
            return found
        return _fetch(program, on_progress)


def _fetch(program: Program, on_progress: debian.Progress) -> Copy:
    """Download and unpack `program` (the caller holds its lock)."""
    from mrctl.images import debian, rootfs

    try:
        source = debian.apt_source()
    except InfraError:
        raise InfraError(program.no_mirror) from None
    on_progress(f"{program.name} is not installed: fetching it from {source.mirror} into "
                f"{folder(program)} (once) ...")
    for stray in folder(program).glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(stray, ignore_errors=True)  # left by a fetch that was killed: no one else unpacks
    archive = debian.Archive(source, on_progress)
    # The program's own packages are fetched even if the host has some of them (chromium without
    # its driver), so that a copy is whole and of one version; their dependencies only if it lacks them.
    skip = (debian.installed_packages() - set(program.packages)) | set(HOST_ONLY) | set(program.leave_out)
    debs = archive.download(archive.closure(program.packages, skip=skip))
    version = archive.packages()[program.packages[0]].version
    target = folder(program) / f"{source.suite}-{version.replace(':', '_')}"
    folder(program).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder(program)))
    try:
        rootfs.unpack(debs, staging)
        for relative, text in program.files.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_text(text)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Copy(target)
