"""The run history: every run's RunRecord in a SQLite file in the user's state directory
($XDG_STATE_HOME/mrctl/history.sqlite), which outlives every cluster.

One row per run: the columns a listing needs, and the whole record as zstd-compressed JSON.
Writers from several runs at once are safe (SQLite's own locking, WAL journal, a busy
timeout). The store is bounded: past KEEP_RUNS runs, or KEEP_BYTES of records, the oldest
runs are pruned as a new one is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import zstandard

from mrctl.errors import MrctlError
from mrctl.host.dirs import PRIVATE_DIR, PRIVATE_FILE, make_private, state_dir
from mrctl.observe.record import RunRecord

KEEP_RUNS = 500
KEEP_BYTES = 256 << 20  # compressed records
BUSY_TIMEOUT_S = 10.0  # how long to wait for a history another process holds (MRCTL_HISTORY_WAIT)
SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's files beside the database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  job_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  exit_code INTEGER NOT NULL,
  started_at REAL NOT NULL,
  elapsed REAL NOT NULL,
  backend TEXT NOT NULL,
  workers INTEGER NOT NULL,
  size INTEGER NOT NULL,
  record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
"""


class HistoryError(MrctlError):
    """The history file cannot be read or written (corrupt, locked, not writable)."""

    exit_code = 3


def busy_timeout_s() -> float:
    """Seconds to wait for a history that another process holds: MRCTL_HISTORY_WAIT, else 10."""
    value = os.environ.get("MRCTL_HISTORY_WAIT", "").strip()
    if not value:
        return BUSY_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise HistoryError(f"MRCTL_HISTORY_WAIT={value!r}: expected a number of seconds, such as 10")
    return seconds


@dataclass(frozen=True)
class RunRow:
    """A run as `mrctl history` lists it."""

    job_id: str
    name: str
    status: str
    exit_code: int
    started_at: float
    elapsed: float
    backend: str
    workers: int


def default_path() -> Path:
    return Path(os.environ.get("MRCTL_HISTORY") or state_dir() / "history.sqlite")


class History:
    """The store, as a context manager: `with History() as h: h.record(run)`."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> History:
        with self._translated("opening"):
            self._make_private()
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s(), isolation_level=None)
            self._prepare(self._db)
        return self

    def _make_private(self) -> None:
        """The history holds every run's params, spec text and tracebacks: its directory is
        0700 and its files 0600, made so (with a warning) if they were looser. SQLite gives its
        -wal and -shm files the database's mode. A directory named by MRCTL_HISTORY is only
        made private if mrctl creates it (it may be a shared one, such as /tmp)."""
        try:
            if self.path.parent == state_dir() or not self.path.parent.is_dir():
                make_private(self.path.parent, PRIVATE_DIR)
            make_private(self.path, PRIVATE_FILE)
            for side in (self.path.with_name(self.path.name + s) for s in SIDE_FILES):
                # never made here, and gone at any moment: SQLite removes them when another
                # process's last connection closes (seen in CI as a failed open, 1 time in 75)
                with contextlib.suppress(FileNotFoundError):
                    make_private(side, PRIVATE_FILE, create=False)
        except OSError as exc:
            raise HistoryError(f"cannot make the run history {self.path} private to this user: {exc}") from None

    @staticmethod
    def _prepare(db: sqlite3.Connection) -> None:
        """WAL mode and the schema. Two processes making a new file at once can get "database
        is locked" here at once, without SQLite's busy wait (it refuses to wait where waiting
        could deadlock): try again until the busy timeout."""
        deadline = time.monotonic() + busy_timeout_s()
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "use History as a context manager"
        return self._db

    def record(self, run: RunRecord) -> None:
        """Write (or replace) a run, then prune the oldest past the bounds."""
        blob = zstandard.ZstdCompressor(level=3).compress(json.dumps(run.to_json()).encode())
        with self._translated("writing"), self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run.job_id, run.name, run.status, run.exit_code, run.started_at, run.elapsed,
                 run.backend, run.workers, len(blob), blob))
            self._prune()

    def _prune(self) -> None:
        self.db.execute("DELETE FROM runs WHERE job_id NOT IN "
                        "(SELECT job_id FROM runs ORDER BY started_at DESC LIMIT ?)", (KEEP_RUNS,))
        total = 0
        for job_id, size in self.db.execute("SELECT job_id, size FROM runs ORDER BY started_at DESC").fetchall():
            total += size
            if total > KEEP_BYTES:
                self.db.execute("DELETE FROM runs WHERE job_id = ?", (job_id,))

    def runs(self, limit: int = 20) -> list[RunRow]:
        """The newest runs first."""
        with self._translated("reading"):
            rows = self.db.execute(
                "SELECT job_id, name, status, exit_code, started_at, elapsed, backend, workers "
                "FROM runs ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
        return [RunRow(*row) for row in rows]

    def get(self, job: str | None = None) -> RunRecord:
        """A run by id, by a unique start of its id, or by its job name (the newest run of
        it); None: the newest run. HistoryLookupError if there is none."""
        with self._translated("reading"):
            if job is None:
                found = self.db.execute("SELECT job_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchall()
            else:
                found = self.db.execute(
                    "SELECT job_id FROM runs WHERE job_id = ? OR job_id LIKE ? ESCAPE '\\' "
                    "ORDER BY job_id = ? DESC, started_at DESC",
                    (job, job.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%", job),
                ).fetchall()
                if len(found) > 1 and found[0][0] != job:
                    raise HistoryLookupError(f"{job!r} matches {len(found)} runs "
                                             f"({', '.join(r[0] for r in found[:5])}...): give more of the id")
                if not found:
                    found = self.db.execute("SELECT job_id FROM runs WHERE name = ? "
                                            "ORDER BY started_at DESC LIMIT 1", (job,)).fetchall()
            if not found:
                raise HistoryLookupError(f"no run {job!r} in the history ({self.path}); "
                                         "mrctl history lists them" if job else
                                         f"the history ({self.path}) has no runs yet")
            (blob,) = self.db.execute("SELECT record FROM runs WHERE job_id = ?", found[0]).fetchone()
        return RunRecord.from_json(json.loads(zstandard.ZstdDecompressor().decompress(blob)))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")  # the write lock first: two writers queue, never deadlock
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise HistoryError(f"{doing} the run history {self.path} failed: {exc}"
                               + ("; another process (another mrctl, a sqlite3 shell) has held it "
                                  f"for over {busy_timeout_s():g}s" if "locked" in str(exc) else "")) from None
        except (sqlite3.DatabaseError, zstandard.ZstdError, ValueError, OSError) as exc:
            raise HistoryError(f"{doing} the run history {self.path} failed: {exc}; the file is damaged: "
                               "move it aside (mrctl starts a new one)") from None


class HistoryLookupError(MrctlError):
    """No run, or more than one, matches what the user named."""

    exit_code = 2
