"""Every run leaves a record (design invariant 11): the RunRecord of a run that ended, however
it ended, built from its spec, its final snapshot and what its master kept, and written to the
history. A history that cannot be written is a warning, never the run's failure."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mrctl.history import History, HistoryError
from mrctl.record import RunRecord, summary_of
from mrctl.snapshot import JobSnapshot
from mrctl.spec import JobSpec

if TYPE_CHECKING:
    from mrctl.master import Master

log = logging.getLogger(__name__)

EXIT_CODES = {"succeeded": 0, "failed": 1, "interrupted": 130, "cancelled": 130}


def build(spec: JobSpec, snap: JobSnapshot, started_at: float, master: Master | None = None,
          exit_code: int | None = None, redis_memory: str = "") -> RunRecord:
    """The record of a run that ended with final snapshot `snap`."""
    book, journal, barriers = None, tuple(snap.events), ()
    if master is not None:
        try:
            master.take_attempts()  # what the last moments logged (Redis may be gone: keep what is)
        except Exception:  # noqa: BLE001 - the record is kept with what was taken before
            log.debug("the last attempt log entries were not taken", exc_info=True)
        book, journal, barriers = master.book, tuple(master.journal), tuple(master.barriers)
    settings: dict[str, Any] = {
        "reducers": spec.reducers, "chunk_size": spec.chunk_size, "max_attempts": spec.max_attempts,
        "task_timeout": spec.task_timeout, "speculative": spec.speculative,
        "output_format": spec.output_format, "inputs": [str(p) for p in spec.inputs[:100]],
        "input_files": len(spec.inputs), "redis_memory": redis_memory,
        "steps": [s.name for g in spec.program for s in g.steps],
    }
    return RunRecord(
        job_id=snap.job_id, name=spec.name, status=snap.status,
        exit_code=EXIT_CODES.get(snap.status, 1) if exit_code is None else exit_code,
        started_at=started_at, elapsed=round(snap.elapsed, 3), backend=spec.backend, workers=spec.workers,
        spec_path=str(spec.spec_path), spec_text=_read(spec), settings=settings, params=dict(spec.params),
        output_path=snap.output_path or (str(spec.output_path) if snap.status == "succeeded" else None),
        error=snap.error, summary=summary_of(snap), phase_seconds=snap.phase_seconds,
        step_seconds=snap.step_seconds, barriers=barriers, counters=snap.counters, events=journal,
        attempts=book.attempts() if book else (), attempts_dropped=book.dropped if book else 0,
    )


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
