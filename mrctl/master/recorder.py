"""Every run leaves a record (design invariant 11): the RunRecord of a run that ended, however
it ended, built from its spec, its final snapshot and what its master kept, and written to the
history. A history that cannot be written is a warning, never the run's failure."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mrctl.observe.history import History, HistoryError
from mrctl.observe.record import Attempt, RunRecord, summary_of
from mrctl.observe.redaction import redact
from mrctl.observe.snapshot import Event, JobSnapshot
from mrctl.spec.jobspec import JobSpec

if TYPE_CHECKING:
    from mrctl.backends.inline import InlineTrace
    from mrctl.master.loop import Master

log = logging.getLogger(__name__)

EXIT_CODES = {"succeeded": 0, "failed": 1, "interrupted": 130, "cancelled": 130}


def build(spec: JobSpec, snap: JobSnapshot, started_at: float, trace: Trace | None = None,
          exit_code: int | None = None, redis_memory: str = "") -> RunRecord:
    """The record of a run that ended with final snapshot `snap`; `trace` is what its master
    (or the inline run) kept of its attempts, events and barriers."""
    trace = trace or Trace(attempts=(), events=tuple(snap.events))
    settings: dict[str, Any] = {
        "reducers": spec.reducers, "chunk_size": spec.chunk_size, "max_attempts": spec.max_attempts,
        "task_timeout": spec.task_timeout, "speculative": spec.speculative,
        "output_format": spec.output_format, "inputs": [str(p) for p in spec.inputs[:100]],
        "input_files": len(spec.inputs), "redis_memory": redis_memory,
        "steps": [s.name for g in spec.program for s in g.steps],
    }
    run = RunRecord(
        job_id=snap.job_id, name=spec.name, status=snap.status,
        exit_code=EXIT_CODES.get(snap.status, 1) if exit_code is None else exit_code,
        started_at=started_at, elapsed=round(snap.elapsed, 3), backend=spec.backend, workers=spec.workers,
        spec_path=str(spec.spec_path), spec_text=_read(spec), settings=settings, params=dict(spec.params),
        output_path=snap.output_path or (str(spec.output_path) if snap.status == "succeeded" else None),
        error=snap.error, summary=summary_of(snap), phase_seconds=snap.phase_seconds,
        step_seconds=snap.step_seconds, barriers=trace.barriers, counters=snap.counters, events=trace.events,
        attempts=trace.attempts, attempts_dropped=trace.dropped,
    )
    return run if spec.keep_secrets else redact(run, [s.params for g in spec.program for s in g.steps])


@dataclass(frozen=True)
class Trace:
    """What a run kept beside its snapshot."""

    attempts: tuple[Attempt, ...]
    events: tuple[Event, ...]
    barriers: tuple[float, ...] = ()
    dropped: int = 0


def of_master(master: Master) -> Trace:
    """What a master kept (it took the attempt log's last entries before its cluster went)."""
    return Trace(master.book.attempts(), tuple(master.journal), tuple(master.barriers), master.book.dropped)


def of_inline(trace: InlineTrace, snap: JobSnapshot) -> Trace:
    return Trace(tuple(trace.attempts), tuple(snap.events), tuple(trace.barriers))


def save(run: RunRecord, history: History | None = None) -> bool:
    """Write `run` to the history; a failure is logged as a warning. True if written."""
    try:
        with history or History() as h:
            h.record(run)
        return True
    except HistoryError as exc:
        log.warning("the run was not recorded in the history: %s", exc)
        return False


def _read(spec: JobSpec) -> str:
    try:
        return spec.spec_path.read_text(encoding="utf-8")[:100_000]
    except (OSError, UnicodeDecodeError):
        return ""
