"""How a run looks in text: pure functions from a JobSnapshot to lines and JSON (the terminal's
live view, drawn with rich, is mrctl.observe.live_view: a plain, JSON or library run never
imports rich).

Human-facing progress goes to stderr, so stdout carries only data (the `--json` summary), as
docker and compose do. Reporters (mrctl.observe.reporters) decide which of these to show, and when.
"""

from __future__ import annotations

from mrctl.observe.snapshot import JobSnapshot, PhaseProgress, StepTasks

PHASE_WORDS = {
    "starting": "starting cluster", "map": "map", "barrier": "shuffle barrier",
    "reduce": "reduce", "output": "writing output", "teardown": "tearing down", "done": "done",
}



def human_bytes(n: int) -> str:
    """`812 B`, `3.4 kB`, `96.0 MB`: decimal units, one decimal."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _phase_elapsed(p: PhaseProgress, now: float) -> float:
    if p.started_at is None:
        return 0.0
    return (p.finished_at if p.finished_at is not None else now) - p.started_at


def _rate_and_eta(p: PhaseProgress, now: float) -> tuple[float | None, float | None]:
    """Throughput in MB/s (map bytes) and the ETA in seconds, when they can be known."""
    took = _phase_elapsed(p, now)
    if took <= 0 or p.done == 0:
        return None, None
    rate = p.bytes_done / 1e6 / took if p.bytes_total else None
    if p.bytes_total and p.bytes_done:
        eta = took * (p.bytes_total - p.bytes_done) / p.bytes_done
    else:
        eta = took * (p.total - p.done) / p.done
    return rate, (eta if p.done < p.total else 0.0)


def progress_text(name: str, p: PhaseProgress, now: float) -> str:
    """`map 5/12 tasks, 40.1 MB of 96.0 MB, 8.2 MB/s, ETA 7s` (no styling)."""
    parts = [f"{name} {p.done}/{p.total} tasks"]
    if p.bytes_total:
        parts.append(f"{human_bytes(p.bytes_done)} of {human_bytes(p.bytes_total)}")
    rate, eta = _rate_and_eta(p, now)
    if rate is not None:
        parts.append(f"{rate:.1f} MB/s")
    if eta is not None and p.done < p.total:
        parts.append(f"ETA {eta:.0f}s")
    if p.running:
        parts.append(f"{p.running} running")
    return ", ".join(parts)


def phase_line(snap: JobSnapshot) -> str:
    """`[  2.0s] phase: map`; in a multi-step job `[  2.0s] step 2/3 (count): map`."""
    where = f"{label}: " if (label := snap.step_label()) and snap.phase in ("map", "barrier", "reduce") else "phase: "
    return f"[{snap.elapsed:6.1f}s] {where}{PHASE_WORDS.get(snap.phase, snap.phase)}"


def steps_text(snap: JobSnapshot) -> str:
    """`graph 0.52s, iterate x10 2.21s, ranks 0.20s`: the finished steps' time, by name."""
    took: dict[str, list[float]] = {}
    for label, seconds in snap.step_seconds:
        name = label.split("(", 1)[1].split(",", 1)[0].rstrip(")")
        took.setdefault(name, []).append(seconds)
    return ", ".join(f"{name}{f' x{len(t)}' if len(t) > 1 else ''} {sum(t):.2f}s" for name, t in took.items())


def tasks_by_step(snap: JobSnapshot) -> list[tuple[str, StepTasks]]:
    """A multi-step run's tasks per step name, in the order the steps first ran, with an
    `x10` after the name of a step that ran ten times (a repeated group); [] for one step."""
    if snap.steps <= 1 and len(snap.step_tasks) <= 1:
        return []
    runs: dict[str, list[StepTasks]] = {}
    for tasks in snap.step_tasks:
        runs.setdefault(tasks.name, []).append(tasks)
    return [(f"{name} x{len(ran)}" if len(ran) > 1 else name, StepTasks.summed(ran, ran[0].number, name))
            for name, ran in runs.items()]


def tasks_text(t: StepTasks) -> str:
    """`map tasks 3/3 (9.0 kB), reduce tasks 4/4`."""
    return (f"map tasks {t.map_done}/{t.map_total} ({human_bytes(t.map_bytes)}), "
            f"reduce tasks {t.reduce_done}/{t.reduce_total}")


def progress_line(snap: JobSnapshot) -> str:
    busy = sum(w.state in ("mapping", "reducing") for w in snap.workers)
    phase = snap.reduce if snap.phase in ("reduce", "output") else snap.map
    name = "reduce" if phase is snap.reduce else "map"
    extra = f", {busy}/{len(snap.workers)} workers busy" if snap.workers else ""
    counters = "".join(f", {k} {v}" for k, v in (("retries", snap.retries), ("refused", snap.refused),
                                                   ("lost", snap.lost)) if v)
    return f"[{snap.elapsed:6.1f}s] {progress_text(name, phase, snap.elapsed)}{extra}{counters}"


def summary_dict(snap: JobSnapshot) -> dict:
    """The final summary as one JSON-serialisable object (`mrctl run --json`)."""
    return {
        "job_id": snap.job_id, "name": snap.name, "status": snap.status,
        "elapsed_seconds": round(snap.elapsed, 3), "phase_seconds": dict(snap.phase_seconds),
        "map": {"done": (t := snap.tasks_total()).map_done, "total": t.map_total, "bytes": t.map_bytes},
        "reduce": {"done": t.reduce_done, "total": t.reduce_total},
        "step_tasks": [{"step": s.number, "name": s.name,
                        "map": {"done": s.map_done, "total": s.map_total, "bytes": s.map_bytes},
                        "reduce": {"done": s.reduce_done, "total": s.reduce_total}} for s in snap.step_tasks],
        "retries": snap.retries, "refused": snap.refused, "failures": snap.failures,
        "failed_attempts": snap.failed_attempts,
        "lost": snap.lost, "timeouts": snap.timeouts, "killed": snap.killed, "backups": snap.backups,
        "records_in": snap.records_in, "records_out": snap.records_out,
        "decode_errors": snap.decode_errors, "redis_peak_bytes": snap.redis_peak_bytes,
        "output_path": snap.output_path if snap.status == "succeeded" else None,
        "error": snap.error,
        "counters": counters_dict(snap),
        "bad_records": snap.bad_records,
        "bad_record_samples": [{"file": b.file, "line": b.line, "error": b.error}
                               for b in snap.bad_record_samples],
        "spilled_bytes": snap.spilled_bytes,
        "step": snap.step, "steps": snap.steps, "step_name": snap.step_name,
        "step_seconds": [{"step": label, "seconds": s} for label, s in snap.step_seconds],
    }


def counters_dict(snap: JobSnapshot) -> dict[str, dict[str, int]]:
    """The job's own counters as {group: {name: total}} (mrjob's shape)."""
    found: dict[str, dict[str, int]] = {}
    for group, name, value in snap.counters:
        found.setdefault(group, {})[name] = value
    return found


def counter_lines(snap: JobSnapshot) -> list[str]:
    """`group: name 3, other 5`, a line per group of the job's own counters."""
    return [f"{group}: " + ", ".join(f"{name} {value}" for name, value in names.items())
            for group, names in counters_dict(snap).items()]


def summary_lines(snap: JobSnapshot) -> list[str]:
    """The final summary as plain lines, the same facts as summary_dict."""
    phases = ", ".join(f"{PHASE_WORDS.get(p, p)} {s:.2f}s" for p, s in snap.phase_seconds)
    lines = [
        f"job {snap.name} ({snap.job_id}) {snap.status} in {snap.elapsed:.2f}s",
        f"  phases: {phases}" if phases else "  phases: -",
        f"  {tasks_text(snap.tasks_total())}",
        *(f"    {name}: {tasks_text(t)}" for name, t in tasks_by_step(snap)),
        f"  retries {snap.retries}, failed attempts {snap.failed_attempts} (timeouts {snap.timeouts}), "
        f"lost attempts {snap.lost}, refused late commits {snap.refused}, failed tasks {snap.failures}"
        + (f", workers killed by chaos {snap.killed}" if snap.killed else "")
        + (f", speculative backups {snap.backups}" if snap.backups else ""),
        f"  records in {snap.records_in}, records out {snap.records_out}",
    ]
    if snap.spilled_bytes:
        lines.append(f"  spilled to the master's disk: {human_bytes(snap.spilled_bytes)} "
                     f"(Redis peak {human_bytes(snap.redis_peak_bytes)})")
    if snap.step_seconds:
        lines.insert(2, f"  steps: {len(snap.step_seconds)} of {snap.steps} ({steps_text(snap)})")
    if snap.decode_errors:
        lines.append(f"  undecodable bytes replaced: {snap.decode_errors}")
    if snap.counters:
        lines.append("  counters:")
        lines += [f"    {line}" for line in counter_lines(snap)]
    if snap.bad_records:
        lines.append(f"  bad records skipped: {snap.bad_records}"
                     + (", the first:" if snap.bad_record_samples else ""))
        lines += [f"    {b.file}, line {b.line}: {b.error}" for b in snap.bad_record_samples]
    if snap.status == "succeeded" and snap.output_path:
        lines.append(f"  output: {snap.output_path}")
    return lines
