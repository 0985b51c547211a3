"""Plain text of the run history: `mrctl history` and `mrctl show`, pure functions of rows and
records (mrctl.observe.history, mrctl.observe.record)."""

from __future__ import annotations

import time

from mrctl.observe.history import RunRow
from mrctl.observe.record import Attempt, RunRecord

SLOWEST_SHOWN = 10


def format_history(rows: list[RunRow]) -> str:
    if not rows:
        return "No runs recorded yet (mrctl run records each one)."
    out = [f"{'job':<22} {'name':<16} {'status':<11} {'exit':>4} {'started':<19} {'seconds':>8}  backend"]
    for r in rows:
        out.append(f"{r.job_id:<22} {r.name:<16} {r.status:<11} {r.exit_code:>4} {_when(r.started_at):<19} "
                   f"{r.elapsed:>8.2f}  {r.backend} x{r.workers}")
    return "\n".join(out)


def format_run(run: RunRecord) -> str:
    s = run.summary
    out = [
        f"job {run.job_id}  {run.name}  {run.status} (exit {run.exit_code})",
        f"  started {_when(run.started_at)}, {run.elapsed:.2f}s, {run.backend} backend, {run.workers} workers",
        f"  spec {run.spec_path}",
    ]
    if run.output_path:
        out.append(f"  output {run.output_path}")
    if run.error:
        out.append("  error: " + run.error.replace("\n", "\n  "))
    out.append(f"  map {s.get('maps_done', 0)}/{s.get('map_tasks', 0)} tasks, reduce "
               f"{s.get('reduces_done', 0)}/{s.get('reduce_tasks', 0)}; records in {s.get('records_in', 0):,}, "
               f"out {s.get('records_out', 0):,}")
    out.append(f"  faults: {s.get('retries', 0)} retries, {s.get('failed_attempts', 0)} failed attempts, "
               f"{s.get('lost', 0)} lost, {s.get('timeouts', 0)} timeouts, {s.get('refused', 0)} refused, "
               f"{s.get('backups', 0)} backups, {s.get('killed', 0)} killed by chaos")
    if run.phase_seconds:
        out.append("  phases: " + ", ".join(f"{p} {t:.2f}s" for p, t in run.phase_seconds))
    if run.step_seconds:
        out.append("  steps: " + ", ".join(f"{label} {t:.2f}s" for label, t in run.step_seconds))
    if run.params:
        out.append("  params: " + ", ".join(f"{k}={v!r}" for k, v in sorted(run.params.items())))
    if run.counters:
        out.append("  counters:")
        out += [f"    {group}: {name} = {value:,}" for group, name, value in run.counters]
    workers = run.workers_seen()
    out.append(f"  attempts: {len(run.attempts) + run.attempts_dropped} on {len(workers)} workers "
               f"({', '.join(workers)})" if workers else "  attempts: none recorded")
    if slowest := run.slowest(SLOWEST_SHOWN):
        out.append("  slowest attempts:")
        out += [f"    {_attempt(a)}" for a in slowest]
    for a in run.failures():
        out.append(f"  failed: {_attempt(a)}")
        if a.error:
            out.append(f"    {a.error}")
        if a.traceback:
            out.append("    " + a.traceback.rstrip().replace("\n", "\n    "))
    others = [a for a in run.attempts if a.outcome in ("lost", "refused", "cancelled")]
    for a in others:
        out.append(f"  {a.outcome}: {_attempt(a)}" + (f"  ({a.error})" if a.error else ""))
    if released := sum(1 for a in run.attempts if a.outcome == "released"):
        out.append(f"  released: {released} attempts handed back unstarted by a batch past its time "
                   "(they count against nothing)")
    if run.events:
        out.append("  events:")
        out += [f"    {e.at:7.2f}s  {e.kind:<11} {e.message}" for e in run.events]
    return "\n".join(out)


def _attempt(a: Attempt) -> str:
    took = f"{a.seconds:.3f}s" if a.seconds is not None else "unfinished"
    step = f" step {a.step}" if a.step > 1 else ""
    backup = " backup" if a.backup else ""
    return f"{a.tid}{step} attempt {a.attempt}{backup} on {a.worker}: {a.start:.2f}s +{took} {a.outcome}"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
