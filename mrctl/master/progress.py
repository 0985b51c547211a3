"""What a view shows of the master's job: its snapshot (phases, progress, workers, counts over
every step), the failure message of a task that failed for good, and the skipped records.
A mixin of Master (mrctl.master.loop), which holds the state these read."""

from __future__ import annotations

from mrctl.broker import MAX_LOST_ATTEMPTS, keys
from mrctl.io.task_ids import is_map, is_reduce, tid_index
from mrctl.observe.snapshot import JobSnapshot, PhaseProgress, StepTasks, WorkerRow
from mrctl.spec.bad_records import SAMPLES_KEPT, SkippedRecord


class ProgressMixin:
    """Master's read-only side: everything here reads Redis and the master's fields."""

    def failure_message(self) -> str:
        tid = (meta.failed_task if (meta := self.broker.meta(self.job)) else "") or "?"
        t = self.broker.task(self.job, tid)
        where = ""
        if "file" in t:
            where = f"\n  input: {t['file']}, bytes {t['start']}-{t['end']} (from line {t['first_line']})"
        elif "source" in t:
            where = f"\n  input: {t['source']}"
        elif is_reduce(tid):  # the key it failed on is in its error
            where = f"\n  input: partition {tid_index(tid)}"
        if self.step.planned > 1:
            tid = f"{tid} of {self.step.label()}"
        tb = t.get("traceback", "").rstrip()
        if t.get("error_kind") == "lost":
            count = f"lost {t.get('losses', '?')} attempts (at most {MAX_LOST_ATTEMPTS} may be lost)"
        else:
            count = f"failed on all {t.get('failures', '?')} attempts (max_attempts {self.spec.max_attempts})"
        return (
            f"task {tid} {count}{where}\n"
            f"  last error (attempt {t.get('error_attempt', '?')} on {t.get('error_worker', '?')}, "
            f"{t.get('error_kind', 'error')}): {t.get('error', '?')}"
            + (f"\n  worker traceback:\n{tb}" if tb else "")
        )

    # -- what a view shows ----------------------------------------------------------------

    def bad_samples(self) -> tuple[SkippedRecord, ...]:
        """The first SAMPLES_KEPT skipped records of committed map tasks, in input order."""
        if not self._stats.get("bad_records"):
            return ()
        found = self.broker.bad_records(self.job)
        for tid in found.keys() - self._bad_seen.keys():  # located by their task's commit
            self._bad_seen[tid] = [SkippedRecord(file, line, error) for file, line, error in found[tid]]
        ordered = sorted(self._bad_seen, key=tid_index)
        return tuple(s for tid in ordered for s in self._bad_seen[tid])[:SAMPLES_KEPT]

    def snapshot(self, worker_states: dict[str, str] | None = None,
                 status: str = "running", error: str | None = None) -> JobSnapshot:
        """The job as it is now; `worker_states` adds what only the backend knows (dead, ...)."""
        stats = self._stats
        total = self._totals()  # fault and record counts over every step so far
        first = self._finished[0] if self._finished else stats  # the input is the first step's
        running = self.broker.running(self.job) if self.phase in ("map", "reduce") else []
        step = self.step
        return JobSnapshot(
            job_id=self.job_id, name=self.spec.name, phase=self.phase, elapsed=self.elapsed(),
            status=status, error=error,
            map=self._progress("map", stats.get("maps_done", 0), self.map_total,
                               sum(is_map(t) for t in running), stats.get("bytes_done", 0),
                               sum(c.size for c in self.plan) if step.first else 0),
            reduce=self._progress("reduce", stats.get("reduces_done", 0), step.spec.reducers,
                                  sum(is_reduce(t) for t in running), 0, 0),
            workers=self._worker_rows(worker_states or {}),
            events=tuple(self._events)[-8:],
            lost=total.get("lost", 0), timeouts=total.get("timeouts", 0), killed=self.killed,
            backups=self.backups,
            redis_peak_bytes=self.broker.memory().peak,
            # zombies of steps already ended were refused too (a step's own stats went with it):
            # read here, at the views' pace, not at every tick's _totals
            retries=total.get("retries", 0),
            refused=total.get("refused", 0) + (self.broker.late_refused(self.job_id) if self._finished else 0),
            failures=total.get("failures", 0), failed_attempts=total.get("failed_attempts", 0),
            records_in=first.get("records_in", 0),
            # the job's output: the last step's reducers', or its mappers' when it is map-only
            records_out=stats.get("records_out" if step.spec.reducers else "map_records_out", 0),
            decode_errors=total.get("decode_errors", 0),
            phase_seconds=self.phase_seconds(),
            output_path=str(self.spec.output_path),
            counters=user_counters(total), bad_records=total.get("bad_records", 0),
            bad_record_samples=self.bad_samples(),
            step=step.number, steps=step.planned, step_name=step.spec.name,
            iteration=step.iteration, iterations=step.iterations,
            step_seconds=tuple(self.step_seconds) if step.planned > 1 else (),
            spilled_bytes=self.spiller.store.spilled_bytes,
            step_tasks=self._step_tasks(),
        )

    def _step_tasks(self) -> tuple[StepTasks, ...]:
        """Every finished step's tasks, then the current step's (unless it is finished: the
        job is done)."""
        done = self._finished
        if done and done[-1] is self._stats:
            return tuple(self.steps_done)
        return (*self.steps_done, self.step_tasks())

    def _totals(self) -> dict[str, int]:
        """Every stats field summed over the finished steps and the current one."""
        done = self._finished  # the last step stays current once the job is done: count it once
        steps = done if done and done[-1] is self._stats else [*done, self._stats]
        total: dict[str, int] = {}
        for stats in steps:
            for name, value in stats.items():
                total[name] = total.get(name, 0) + value
        return total

    def _progress(self, phase: str, done: int, total: int, running: int,
                  bytes_done: int, bytes_total: int) -> PhaseProgress:
        start, end = self.phase_times.get(phase, (None, None))
        finished = end if phase != self.phase and start is not None else None
        return PhaseProgress(done, total, running, bytes_done, bytes_total, start, finished)

    def _worker_rows(self, states: dict[str, str]) -> tuple[WorkerRow, ...]:
        info, beats, now = self.broker.worker_rows()
        rows = []
        for name in sorted(set(info) | set(states), key=_natural):
            w = info.get(name, {})
            age = (now - beats[name]) / 1000 if name in beats else None
            gone = states.get(name) in ("dead", "replaced")
            state = states[name] if gone else w.get("state", "starting")
            rows.append(WorkerRow(name, state, None if gone else w.get("task"),
                                  None if gone else w.get("attempt"), w.get("tasks_done", 0), age))
        return tuple(rows)


def user_counters(stats: dict[str, int]) -> tuple[tuple[str, str, int], ...]:
    """The job's own counters in the stats hash, as sorted (group, name, total)."""
    found = ((*parsed, value) for name, value in stats.items()
             if (parsed := keys.parse_counter_field(name)) is not None)
    return tuple(sorted(found))


def _natural(name: str) -> tuple[str, int]:
    base, _, num = name.rpartition("-")
    return (base, int(num)) if num.isdigit() else (name, 0)
