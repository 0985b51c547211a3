"""`mrctl doctor`: what a run needs on this machine, checked one by one, each problem with
its fix. The verdict answers one question: would `mrctl run` work here now?

Checks are read-only and bounded in time (a registry probe of 3 s, a mirror probe of 5 s):
nothing is pulled, built, fetched or started.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mrctl.backends import spill_dirs
from mrctl.dockerapi.host import DockerHost
from mrctl.errors import InfraError
from mrctl.host.dirs import cache_dir, loose_modes, state_dir
from mrctl.images import build as images
from mrctl.images import debian

if TYPE_CHECKING:
    from rich.console import RenderableType

OK, NOTE, WARN, FAIL = "ok", "note", "warn", "fail"
MIN_FREE_BYTES = 2 << 30  # the images take ~0.4 GB; leave room for inputs and outputs
PRIVATE_SCAN = 1000  # entries of the state directory looked at, at most


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | note | warn | fail
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Diagnosis:
    checks: tuple[Check, ...]

    @property
    def docker_ready(self) -> bool:
        """A docker-backend run would work: nothing failed."""
        return all(c.status != FAIL for c in self.checks)


def diagnose() -> Diagnosis:
    """Run every check; a Docker engine that does not answer skips the checks that need it."""
    checks = [_python()]
    try:
        host = DockerHost(timeout=10)
    except InfraError as exc:
        checks.append(Check("Docker engine", FAIL, str(exc).split(". ")[0],
                            "start Docker (systemctl start docker), or let this user use it "
                            "(docker group), or run with --backend local"))
        checks += [_mirror(needed=True), _redis_server(), _disk("cache", cache_dir()), _spill(), _private()]
        return Diagnosis(tuple(checks))
    with host:
        checks += _engine(host)
        registry = host.registry_answers(images.ONLINE_PYTHON)
        checks.append(Check("registry", OK if registry else NOTE,
                            "reachable: the official python and redis images can be pulled" if registry
                            else "none answered within 3 s: bases are built from the Debian mirror"))
        image_checks, need_base = _images(host, registry)
        checks += image_checks
        checks.append(_mirror(needed=need_base))
        checks.append(_redis_server())
        checks.append(_disk("Docker data", Path(host.data_root())))
        checks.append(_disk("cache", cache_dir()))
    checks.append(_spill())
    checks.append(_private())
    return Diagnosis(tuple(checks))


def _python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    return Check("Python", OK if sys.version_info >= (3, 11) else FAIL, f"{version} ({sys.executable})",
                 "" if sys.version_info >= (3, 11) else "mrctl needs Python 3.11 or newer")


def _engine(host: DockerHost) -> list[Check]:
    version = host.version()
    checks = [Check("Docker engine", OK, f"{version} reachable")]
    who = "root" if os.geteuid() == 0 else "this user"
    checks.append(Check("Docker access", NOTE, f"{who} can use the Docker engine, which is root-equivalent "
                        "on this host: treat mrctl like docker itself"))
    return checks


def _images(host: DockerHost, registry: bool) -> tuple[list[Check], bool]:
    """Image checks, and whether a base still has to be built from the mirror."""
    state = images.image_state(host)
    checks = []
    if state.base is None:
        how = "pulled" if registry else "built from the Debian mirror (about a minute)"
        checks.append(Check("base images", NOTE, f"none yet: will be {how} on the first run",
                            "or now: mrctl images --build"))
    else:
        checks.append(Check("base images", OK, state.base))
    if state.worker_current:
        checks.append(Check("worker image", OK, f"{state.worker_current} (matches this source)"))
    else:
        checks.append(Check("worker image", NOTE, "none for this source: built on the next run (~40 s)",
                            "or now: mrctl images --build"))
    if state.worker_stale:
        checks.append(Check("stale images", NOTE, f"{len(state.worker_stale)} worker images of older "
                            "source", "docker rmi " + " ".join(state.worker_stale)))
    return checks, state.base is None and not registry


def _mirror(needed: bool) -> Check:
    try:
        source = debian.apt_source()
        debian.probe_mirror(source)
    except InfraError as exc:
        return Check("Debian mirror", FAIL if needed else WARN, str(exc),
                     "give Docker registry access, or fix the host's apt sources"
                     if needed else "only needed to build images offline or fetch redis-server")
    return Check("Debian mirror", OK, f"{source.mirror} {source.suite} answers "
                 "(offline base images and redis-server come from it)")


def _redis_server() -> Check:
    from mrctl.backends.redis_server import find_redis_server

    try:
        found = find_redis_server()
        if found is not None:
            version = re.search(r"v=(\S+)", found.version())
            return Check("redis-server (local backend)", OK,
                         f"{version.group(1) if version else '?'} ({found.origin})")
    except InfraError as exc:
        return Check("redis-server (local backend)", WARN, str(exc),
                     f"remove {cache_dir() / 'redis-server'}; it is fetched again")
    return Check("redis-server (local backend)", NOTE, "not installed: fetched from the Debian mirror "
                 "into the cache on the first --backend local run")


def _spill() -> Check:
    """Spill directories left by masters that were killed outright (read-only: listed here,
    removed by `mrctl down` or the next run)."""
    where = tempfile.gettempdir()
    strays = spill_dirs.strays()
    if not strays:
        return Check("spill directories", OK, f"none stray in {where}")
    size = sum(s.size for s in strays)
    shown = "; ".join(spill_dirs.describe(s) for s in strays[:3]) + ("; ..." if len(strays) > 3 else "")
    return Check("spill directories", WARN, f"{len(strays)} stray in {where}, {size / 1e6:.1f} MB, of masters "
                 f"that died: {shown}", "mrctl down removes them (so does the next run)")


def _private() -> Check:
    """The state directory (run history, cluster passwords, local cluster records) and the
    history file must be this user's alone: any group or other permission bit is reported."""
    from mrctl.observe.history import SIDE_FILES, default_path

    state, history = state_dir(), default_path()
    paths = [state]
    with contextlib.suppress(OSError):
        paths += itertools.islice(state.rglob("*"), PRIVATE_SCAN)
    paths += [p for p in (history, *(history.with_name(history.name + s) for s in SIDE_FILES)) if p not in paths]
    loose = loose_modes(paths)
    if not loose:
        return Check("private files", OK, f"{state} and the run history {history}: this user's only")
    shown = ", ".join(f"{path} is {mode:04o}" for path, mode in loose[:5]) + (", ..." if len(loose) > 5 else "")
    return Check("private files", WARN, f"{len(loose)} readable by other users: {shown}",
                 "chmod go= " + " ".join(str(p) for p, _ in loose[:5]) + " (a run tightens the history itself)")


def _disk(what: str, path: Path) -> Check:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    status = OK if free >= MIN_FREE_BYTES else WARN
    return Check(f"free disk ({what})", status, f"{free / 1e9:.1f} GB free at {path}",
                 "" if status == OK else "free some space: docker system prune, or remove old images")


CHECK_STYLE = {"ok": "green", "note": "cyan", "warn": "yellow", "fail": "bold red"}


def render_diagnosis(diagnosis: Diagnosis) -> RenderableType:
    """`mrctl doctor`: one row per check, its fix beside it, and the verdict."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=True, header_style="bold", expand=False)
    for column in ("check", "", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for c in diagnosis.checks:
        table.add_row(c.name, Text(c.status, style=CHECK_STYLE.get(c.status, "")), c.detail, c.fix)
    verdict = (Text("mrctl run would work here.", style="green") if diagnosis.docker_ready
               else Text("mrctl run would fail here: see the fixes above.", style="bold red"))
    return Group(table, verdict)
