"""What a run leaves behind: plain frozen data that the history stores (mrctl.observe.history), `mrctl
show` prints, the timeline draws (mrctl.observe.timeline) and the web page serves (mrctl.web).

Every time is in seconds since the run started, like a JobSnapshot's. Attempts are built from
the attempt log that the task protocol's Lua scripts write (keys.attempt_log), so each start
and end is the Redis server's own clock, taken in the same atomic step as the state change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mrctl.io.task_ids import is_map
from mrctl.observe.snapshot import Event, JobSnapshot

# How an attempt ended. error/timeout/oom count toward max_attempts; lost (its worker died or
# went silent) does not; cancelled: a speculative pair's loser; refused: a zombie's late commit;
# released: claimed in a batch but given back unstarted by its worker (the batch ran past its
# slice, or the worker stopped), counted nowhere; running: it had not ended when the run did.
OUTCOMES = ("committed", "error", "timeout", "oom", "lost", "cancelled", "refused", "released", "running")

ATTEMPTS_KEPT = 100_000  # per run; past it only attempts that did not simply commit are kept
EVENTS_KEPT = 5_000  # per run


@dataclass(frozen=True)
class Attempt:
    tid: str  # m:<i> or r:<r>
    attempt: int
    worker: str
    start: float
    end: float | None = None  # None while running
    outcome: str = "running"
    step: int = 1  # 1-based over the run (an iteration's steps counted)
    backup: bool = False  # a speculative backup of a straggler
    error: str = ""
    traceback: str = ""

    @property
    def phase(self) -> str:
        return "map" if is_map(self.tid) else "reduce"

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True)
class RunRecord:
    """One run, succeeded, failed, interrupted or cancelled."""

    job_id: str
    name: str
    status: str  # succeeded | failed | interrupted | cancelled
    exit_code: int
    started_at: float  # Unix time
    elapsed: float
    backend: str
    workers: int
    spec_path: str = ""
    spec_text: str = ""  # the YAML as it was when the run started
    settings: dict[str, Any] = field(default_factory=dict)  # reducers, chunk_size, ...
    params: dict[str, Any] = field(default_factory=dict)
    output_path: str | None = None
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # the final snapshot's numbers
    phase_seconds: tuple[tuple[str, float], ...] = ()
    step_seconds: tuple[tuple[str, float], ...] = ()
    barriers: tuple[float, ...] = ()  # when each step's map phase ended (its shuffle barrier)
    counters: tuple[tuple[str, str, int], ...] = ()
    events: tuple[Event, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    attempts_dropped: int = 0  # committed attempts left out past ATTEMPTS_KEPT

    def failures(self) -> list[Attempt]:
        """Attempts whose code raised, timed out or ran out of memory, in time order."""
        return [a for a in self.attempts if a.outcome in ("error", "timeout", "oom")]

    def slowest(self, n: int = 10) -> list[Attempt]:
        ended = [a for a in self.attempts if a.end is not None]
        return sorted(ended, key=lambda a: (-(a.end - a.start), a.start))[:n]  # type: ignore[operator]

    def workers_seen(self) -> list[str]:
        """Every worker that ran an attempt, in the order each started its first."""
        return list(dict.fromkeys(a.worker for a in sorted(self.attempts, key=lambda a: a.start)))

    def to_json(self) -> dict[str, Any]:
        """Plain data (what from_json reads back); field by field, since dataclasses.asdict's
        deep copy costs a tenth of a second per 10,000 attempts."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["attempts"] = [dict(vars(a)) for a in self.attempts]
        data["events"] = [dict(vars(e)) for e in self.events]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        data = dict(data)
        data["events"] = tuple(Event(**e) for e in data.get("events", ()))
        data["attempts"] = tuple(Attempt(**a) for a in data.get("attempts", ()))
        for name in ("phase_seconds", "step_seconds", "counters", "barriers"):
            data[name] = tuple(tuple(x) if isinstance(x, list) else x for x in data.get(name, ()))
        return cls(**data)


class AttemptBook:
    """Builds Attempts from attempt-log entries as the master takes them, across steps.

    `offset_s`: the Redis server's clock (seconds) at the run's second 0, so that a logged
    millisecond time becomes seconds since the start.
    """

    def __init__(self, offset_s: float = 0.0) -> None:
        self.offset_s = offset_s
        self._open: dict[tuple[int, str, int], Attempt] = {}
        self._ended: list[Attempt] = []
        self.dropped = 0

    def add(self, step: int, entries: Iterable[list[Any]]) -> None:
        for entry in entries:
            kind, tid, attempt = entry[0], str(entry[1]), int(entry[2])
            at = float(entry[4]) / 1000 - self.offset_s
            key = (step, tid, attempt)
            if kind == "s":
                self._open[key] = Attempt(tid, attempt, str(entry[3]), at, step=step, backup=bool(entry[5]))
                continue
            outcome, worker, message, tb = str(entry[3]), str(entry[5]), str(entry[6]), str(entry[7])
            began = self._open.pop(key, None)
            if began is None:  # refused: the zombie's attempt had already ended (lost, cancelled)
                began = self._reopen(key) or Attempt(tid, attempt, worker, at, step=step)
                message = f"{began.error}; then {message}" if began.error else message
                tb = tb or began.traceback
            # built whole, not dataclasses.replace: thousands of tiny tasks a second end here
            self._keep(Attempt(began.tid, began.attempt, began.worker, began.start, end=at, outcome=outcome,
                               step=began.step, backup=began.backup, error=message, traceback=tb))

    def _reopen(self, key: tuple[int, str, int]) -> Attempt | None:
        """A late commit ends the attempt that a reaper ended before: it ran until now, and
        its end is the refusal (the earlier reason stays in its error)."""
        for i in range(len(self._ended) - 1, -1, -1):
            a = self._ended[i]
            if (a.step, a.tid, a.attempt) == key:
                del self._ended[i]
                return dataclasses.replace(a, error=f"{a.outcome}: {a.error}" if a.error else a.outcome)
        return None

    def _keep(self, attempt: Attempt) -> None:
        if len(self._ended) >= ATTEMPTS_KEPT and attempt.outcome == "committed" and not attempt.backup:
            self.dropped += 1
            return
        self._ended.append(attempt)

    def attempts(self) -> tuple[Attempt, ...]:
        """Every attempt so far, in start order; those still open as running."""
        return tuple(sorted([*self._ended, *self._open.values()], key=lambda a: (a.start, a.step, a.tid)))


def summary_of(snap: JobSnapshot) -> dict[str, Any]:
    """The numbers of a final snapshot worth keeping (progress, faults, records)."""
    keep = ("retries", "refused", "failures", "records_in", "records_out", "decode_errors",
            "failed_attempts", "lost", "timeouts", "killed", "backups", "redis_peak_bytes",
            "bad_records", "spilled_bytes", "steps")
    tasks = snap.tasks_total()  # over every step, as the summary shows them
    return {
        **{name: getattr(snap, name) for name in keep},
        "map_tasks": tasks.map_total, "maps_done": tasks.map_done, "bytes_total": snap.map.bytes_total,
        "reduce_tasks": tasks.reduce_total, "reduces_done": tasks.reduce_done,
    }
