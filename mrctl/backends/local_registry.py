"""A record of every local-backend cluster on this host, so that `mrctl down` can clean up
after a master that died without tearing down (SIGKILL, the OOM killer, a closed terminal).

Layout, one file per cluster, written atomically (temp file + os.replace):

    $XDG_STATE_HOME/mrctl/local/<cluster>.json    (default ~/.local/state; dirs 0700, file 0600)
    {"cluster": "3f9a0c1d", "job": "wordcount", "job_id": "20260101-120000-ab12",
     "temp_dir": "/tmp/mrctl-local-3f9a0c1d-k2j3", "boot_id": "<kernel boot id>",
     "master": {"pid": 4242, "started": 123456, "role": "master"},
     "children": [{"pid": 4250, "started": 123470, "role": "redis"}, ...],
     "redis_url": "unix://:<password>@/tmp/mrctl-local-3f9a0c1d-k2j3/redis.sock?db=0"}

The Redis URL (with the cluster's password, hence the 0600 file) lets `mrctl ui` in another
terminal show the run live and send it commands, as `mrctl status` reads a Docker cluster's
password from mrctl.backends.credentials.

A process is named by its pid *and* its start time (clock ticks after boot, field 22 of
/proc/<pid>/stat) within one boot: a pid the kernel has since handed to another process
never matches, so cleaning up never signals a stranger. A record is a leftover when its master
is no longer running; the cluster that wrote it removes it at normal teardown.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mrctl.host.dirs import private_state_dir, state_dir

log = logging.getLogger(__name__)

TEMP_DIR_PREFIX = "mrctl-local-"  # only directories named so are ever deleted
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def supported() -> bool:
    """Whether this host names processes the way records need (Linux /proc)."""
    return Path("/proc/self/stat").exists() and _BOOT_ID.exists()


def records_dir() -> Path:
    """$XDG_STATE_HOME/mrctl/local, else ~/.local/state/mrctl/local."""
    return state_dir() / "local"


def boot_id() -> str:
    return _BOOT_ID.read_text().strip()


def running_here(process: Process, boot: str) -> bool:
    """Whether `process`, recorded during boot `boot`, still runs on this host: the one helper
    for "is this master alive" (local records, spill dirs' owners, Docker clusters' masters).
    Another boot means it is gone; a pid reused since has another start time."""
    return boot == boot_id() and process.is_running()


def _start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot); None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and parens
    return None if fields[0] in ("Z", "X") else int(fields[19])


@dataclass(frozen=True)
class Process:
    """One process, named so that a recycled pid never matches it."""

    pid: int
    started: int
    role: str  # "master", "redis", "worker-3"

    @classmethod
    def of(cls, pid: int, role: str) -> Process:
        started = _start_time(pid)
        if started is None:
            raise ProcessLookupError(f"process {pid} ({role}) is not running")
        return cls(pid, started, role)

    def is_running(self) -> bool:
        return _start_time(self.pid) == self.started

    def kill(self) -> bool:
        """SIGKILL this process iff it is still the one recorded; True if it was signalled.
        Through a pidfd, so the pid cannot be recycled between the check and the signal."""
        try:
            fd = os.pidfd_open(self.pid)
        except OSError:
            return False  # gone already
        try:
            if not self.is_running():
                return False
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            return True
        except ProcessLookupError:
            return False
        finally:
            os.close(fd)


@dataclass(frozen=True)
class LocalRecord:
    """What `mrctl down` needs to clean up a local cluster whose master died."""

    cluster: str
    job: str
    job_id: str
    temp_dir: str
    boot_id: str
    master: Process
    children: tuple[Process, ...] = ()
    redis_url: str = ""  # "" in records written before the web page existed

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> LocalRecord:
        raw = json.loads(text)
        return cls(**{**raw, "master": Process(**raw["master"]),
                      "children": tuple(Process(**c) for c in raw["children"])})

    def with_children(self, children: list[Process]) -> LocalRecord:
        return replace(self, children=tuple(children))

    def master_running(self) -> bool:
        return running_here(self.master, self.boot_id)


def save(record: LocalRecord) -> None:
    """Write (or rewrite) a cluster's record: 0600, atomically."""
    folder = records_dir()
    private_state_dir()
    folder.mkdir(mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{record.cluster}-", suffix=".tmp", dir=folder)  # 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(record.to_json())
        os.replace(tmp, folder / f"{record.cluster}.json")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove(cluster: str) -> None:
    (records_dir() / f"{cluster}.json").unlink(missing_ok=True)


def leftovers() -> list[LocalRecord]:
    """Records whose master is no longer running."""
    return [r for r in records() if not r.master_running()]


def running() -> list[LocalRecord]:
    """Records whose master is running: local clusters at work now (mrctl ui lists them)."""
    return [r for r in records() if r.master_running()]


def records() -> list[LocalRecord]:
    """Every readable record (an unreadable one is skipped with a warning)."""
    found = []
    for path in sorted(records_dir().glob("*.json")):
        try:
            record = LocalRecord.from_json(path.read_text())
        except FileNotFoundError:
            continue  # its cluster tore down meanwhile
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s: not a readable mrctl record (%s)", path, exc)
            continue
        found.append(record)
    return found


@dataclass(frozen=True)
class Cleanup:
    """What cleaning one leftover did."""

    record: LocalRecord
    killed: tuple[str, ...]  # roles of the processes killed
    deleted: str | None  # the temp dir deleted, if there was one of ours
    survivors: tuple[str, ...] = ()  # still running after SIGKILL: the record is kept


def clean(record: LocalRecord, timeout: float = 5.0) -> Cleanup:
    """Kill the recorded processes that are still the ones recorded, delete the cluster's temp
    dir, then forget the record (kept if a process would not die)."""
    same_boot = record.boot_id == boot_id()
    killed = [p for p in record.children if same_boot and p.kill()]
    deadline = time.monotonic() + timeout
    while (alive := [p for p in killed if p.is_running()]) and time.monotonic() < deadline:
        time.sleep(0.02)
    if alive:
        return Cleanup(record, tuple(p.role for p in killed), None, tuple(p.role for p in alive))
    deleted = _delete_temp_dir(Path(record.temp_dir))
    remove(record.cluster)
    return Cleanup(record, tuple(p.role for p in killed), deleted)


def _delete_temp_dir(path: Path) -> str | None:
    """Delete `path` only if it is a directory of ours named like a local cluster's."""
    try:
        info = path.lstat()
    except OSError:
        return None
    if not path.name.startswith(TEMP_DIR_PREFIX) or not path.is_dir() or path.is_symlink() \
            or info.st_uid != os.getuid():
        log.warning("not deleting %s: not a local cluster's temp dir", path)
        return None
    shutil.rmtree(path, ignore_errors=True)
    return str(path)
