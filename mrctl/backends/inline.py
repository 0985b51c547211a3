"""`--backend inline`: the job's classes run by a plain sequential loop in this process.

No Redis, no workers, no retries: mrjob's inline runner is the model. It is the quickest way
to debug a job or unit-test it, and the framework's own speed floor in benchmarks. It runs
the tasks a distributed run would — a map task per chunk, R partitions, a reduce task per
partition, and in a later step a map task per output of the step before — one after another,
so its output is the same as a distributed run's, byte for byte, for a deterministic job.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mrctl.errors import JobFailed, MrctlError, SpecError, bounded_message, bounded_traceback
from mrctl.io import codec
from mrctl.io.chunks import ChunkRef, display_path, plan_chunks, read_chunk
from mrctl.io.formats import ChunkFormat
from mrctl.io.output import write_output
from mrctl.io.task_ids import map_tid, reduce_tid
from mrctl.job import StepPlace, TaskContext, with_context
from mrctl.observe.record import Attempt
from mrctl.observe.snapshot import JobSnapshot, PhaseProgress, StepTasks
from mrctl.spec import job_files
from mrctl.spec.bad_records import SAMPLES_KEPT, SkippedRecord, exceeded_message
from mrctl.spec.jobspec import JobSpec
from mrctl.spec.steps import RunStep, StepSpec, unroll
from mrctl.worker import tasks
from mrctl.worker.loader import JobClasses, job_classes, load_module

Pairs = list[tuple[Any, Any]]
PAIRS = ChunkFormat("pairs")


@dataclass
class InlineTrace:
    """What an inline run did, for its record: every task as one attempt on worker "inline",
    and when each step's map phase ended."""

    t0: float = field(default_factory=time.monotonic)
    attempts: list[Attempt] = field(default_factory=list)
    barriers: list[float] = field(default_factory=list)


def run_inline(spec: JobSpec, job_id: str, sink, trace: InlineTrace | None = None) -> JobSnapshot:
    """Run the job's steps in order in this process. A task's exception fails the job at once
    (JobFailed); the last snapshot given to `sink` before it then shows what the run did."""
    trace = trace or InlineTrace()
    plan = plan_chunks(spec.inputs, spec.chunk_size, spec.input_formats)
    run = _Progress(spec, job_id, trace.t0, sum(c.size for c in plan))
    try:
        step, outputs = _run_steps(spec, plan, run, trace, sink)
        run.set_phase("output")
        if step.spec.reducers:  # merged in key order, as the master merges reduce outputs
            pairs = heapq.merge(*outputs, key=lambda kv: codec.sort_key(kv[0]))
        else:  # map-only: every map task's pairs, in input order
            pairs = itertools.chain.from_iterable(outputs)
        run.records_out = write_output(spec.output_path, pairs, spec.output_format)
    except MrctlError:
        sink(run.snapshot())  # what ran, for the failed run's summary and record
        raise
    run.set_phase("done")
    final = dataclasses.replace(run.snapshot("succeeded"), output_path=str(spec.output_path))
    sink(final)
    return final


def _run_steps(spec: JobSpec, plan: list[ChunkRef], run: _Progress, trace: InlineTrace,
               sink) -> tuple[RunStep, list[Pairs]]:
    """Every step of the program, each map phase then reduce phase: (the last step, its
    outputs, one per reduce partition or, map-only, per map task)."""
    done: list[dict[tuple[str, str], int]] = []  # each finished step's own counters
    outputs: list[Pairs] = []  # the last step's outputs: one per reduce partition (or map task)

    def last(n: int) -> dict[tuple[str, str], int]:
        summed: dict[tuple[str, str], int] = {}
        for counters in done[len(done) - n:] if n else ():
            for key, value in counters.items():
                summed[key] = summed.get(key, 0) + value
        return summed

    step: RunStep | None = None
    for step in unroll(spec.program, spec.params, last):
        classes = _classes(step.spec)
        counters: dict[tuple[str, str], int] = {}
        task = _Step(spec, step, classes, last(1), last(len(done)), run, trace, counters)
        run.begin_step(step, len(plan) if step.first else len(outputs), counters)
        if step.first:
            blobs = task.first_maps(plan, lambda: sink(run.snapshot()))
        else:
            blobs = [task.map_pairs(i, pairs) for i, pairs in enumerate(outputs)]
        trace.barriers.append(run.elapsed())
        run.set_phase("reduce")
        outputs = task.reduce_all(blobs)
        run.end_step()
        done.append(counters)
    assert step is not None  # a program has at least one step
    return step, outputs


@dataclass
class _Progress:
    """What an inline run has done so far. Its snapshots, a failed run's last one too, are
    built from it as a distributed run's are from its master: per step, the stats fields the
    workers' commits count (maps_done, bytes_done, reduces_done, ...)."""

    spec: JobSpec
    job_id: str
    t0: float
    input_bytes: int
    counts: _Counts = field(default_factory=lambda: _Counts())
    phase: str = "map"
    phase_s: dict[str, float] = field(default_factory=dict)  # finished phases' seconds, summed
    phase_at: float = 0.0  # when the current phase began
    step: RunStep | None = None
    map_total: int = 0
    stats: dict[str, int] = field(default_factory=dict)  # the current step's
    counters: dict[tuple[str, str], int] = field(default_factory=dict)  # the current step's own
    bounds: dict[str, list[float | None]] = field(default_factory=dict)  # this step's phase -> [start, end]
    steps_done: list[StepTasks] = field(default_factory=list)
    step_seconds: list[tuple[str, float]] = field(default_factory=list)
    step_began: float = 0.0
    records_in: int = 0  # the first step's: the job's input
    decode_errors: int = 0
    records_out: int | None = None  # the output file's, once written
    failures: int = 0  # the task that failed the run (no retries inline)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def set_phase(self, phase: str) -> None:
        now = self.elapsed()
        self.phase_s[self.phase] = self.phase_s.get(self.phase, 0.0) + now - self.phase_at
        if self.phase in self.bounds:
            self.bounds[self.phase][1] = now
        self.phase, self.phase_at = phase, now
        self.bounds[phase] = [now, None]

    def begin_step(self, step: RunStep, map_total: int, counters: dict[tuple[str, str], int]) -> None:
        if self.step is not None:
            self.set_phase("map")
        self.step, self.map_total, self.counters, self.stats = step, map_total, counters, {}
        self.bounds = {"map": [self.phase_at, None]}
        self.step_began = self.elapsed()

    def count(self, **amounts: int) -> None:
        for name, n in amounts.items():
            self.stats[name] = self.stats.get(name, 0) + n

    def end_step(self) -> None:
        assert self.step is not None
        self.counts.add(self.counters)
        self.counters = {}
        self.steps_done.append(self.step_tasks())
        self.step_seconds.append((self.step.label(), round(self.elapsed() - self.step_began, 3)))

    def step_tasks(self) -> StepTasks:
        step = self.step
        assert step is not None
        return StepTasks.of(step.number, step.spec.name, self.stats, self.map_total, step.spec.reducers)

    def snapshot(self, status: str = "running") -> JobSnapshot:
        step = self.step or RunStep(1, 1, self.spec.program[0].steps[0])
        ended = bool(self.steps_done) and self.steps_done[-1].number == step.number
        totals = dict(self.phase_s)
        if self.phase != "done":
            totals[self.phase] = totals.get(self.phase, 0.0) + self.elapsed() - self.phase_at
        counts = self.counts.fields()
        counts["counters"] = _sorted({**self.counts.counters, **{
            k: self.counts.counters.get(k, 0) + v for k, v in self.counters.items()}})
        map_at, reduce_at = self.bounds.get("map", [None, None]), self.bounds.get("reduce", [None, None])
        return JobSnapshot(
            self.job_id, self.spec.name, self.phase, self.elapsed(), status=status,
            map=PhaseProgress(self.stats.get("maps_done", 0), self.map_total, 0, self.stats.get("bytes_done", 0),
                              self.input_bytes if step.first else 0, *map_at),
            reduce=PhaseProgress(self.stats.get("reduces_done", 0), step.spec.reducers if self.step else 0,
                                 0, 0, 0, *reduce_at),
            records_in=self.records_in, decode_errors=self.decode_errors,
            records_out=self.stats.get("records_out" if step.spec.reducers else "map_records_out", 0)
            if self.records_out is None else self.records_out,
            failures=self.failures, failed_attempts=self.failures,
            phase_seconds=tuple((p, round(t, 3)) for p, t in totals.items()), **counts,
            step=step.number, steps=step.planned, step_name=step.spec.name, iteration=step.iteration,
            iterations=step.iterations, step_seconds=tuple(self.step_seconds) if step.planned > 1 else (),
            step_tasks=tuple(self.steps_done) if ended or self.step is None else (*self.steps_done, self.step_tasks()),
        )


def _classes(step: StepSpec) -> JobClasses:
    try:
        files = job_files.bundle([step.module])  # its siblings, as a worker gets them
        module = load_module(display_path(step.module), files[step.module.name], siblings=files)
        return job_classes(module, step.mapper, step.reducer, step.combiner)
    except Exception as exc:
        raise SpecError(f"cannot load {step.module}: {type(exc).__name__}: {exc}") from None


@dataclass
class _Step:
    """One step's tasks, run in order: each with fresh job objects and its own context."""

    spec: JobSpec
    step: RunStep
    classes: JobClasses
    previous: dict[tuple[str, str], int]
    before: dict[tuple[str, str], int]
    run: _Progress
    trace: InlineTrace
    counters: dict[tuple[str, str], int] = field(default_factory=dict)  # this step's

    def _context(self, tid: str, input_path: str | None = None, tag: str | None = None) -> TaskContext:
        place = StepPlace(self.step.number, self.step.spec.name, self.step.iteration, self.previous, self.before)
        return TaskContext(tid, 1, {**self.spec.params, **self.step.spec.params}, input_path, tag,
                           counters=self.counters, step=place)

    def _task(self, tid: str, where: Callable[[Exception], str], run: Callable[[], Any]) -> Any:
        """Run one task; its exception fails the job (no retries inline), naming the task and
        `where(exception)`, its input."""
        began = time.monotonic() - self.trace.t0
        attempt = Attempt(tid, 1, "inline", began, step=self.step.number)
        try:
            done = run()
        except Exception as exc:
            self.run.failures += 1
            self.trace.attempts.append(dataclasses.replace(
                attempt, end=time.monotonic() - self.trace.t0, outcome="error",
                error=bounded_message(exc), traceback=bounded_traceback(exc)))
            of = f" of {self.step.label()}" if self.step.planned > 1 else ""
            raise JobFailed(f"task {tid}{of} failed (inline, no retries)\n  input: {where(exc)}\n"
                            f"  error: {bounded_message(exc)}\n{bounded_traceback(exc)}") from None
        self.trace.attempts.append(dataclasses.replace(attempt, end=time.monotonic() - self.trace.t0,
                                                       outcome="committed"))
        return done

    def _map(self, context: TaskContext, data: bytes, fmt: ChunkFormat,
             where: Callable[[Exception], str]) -> tasks.MapResult:
        classes = self.classes
        combiner = with_context(classes.combiner, context) if classes.combiner else None
        mapper = with_context(classes.mapper, context)
        return self._task(context.task_id, where, lambda: tasks.run_map(
            mapper, combiner, data, self.step.spec.reducers, self.spec.encoding_errors, fmt,
            skip_bad=self.spec.bad_records.skip))

    def _skipped(self, result: tasks.MapResult, ref: ChunkRef | None = None) -> None:
        """Count a map task's skipped records (and keep the first ones of the input's)."""
        counts = self.run.counts
        counts.skipped += result.bad_records
        for index, error in result.bad_samples[:SAMPLES_KEPT - len(counts.samples)] if ref else ():
            counts.samples.append(SkippedRecord(display_path(ref.path), _line_of(ref, index), error))

    def _fail_if_too_many_skipped(self) -> None:
        """Past the spec's bad_records max, over every step so far, the job fails."""
        counts = self.run.counts
        if self.spec.bad_records.exceeded(counts.skipped):
            raise JobFailed(exceeded_message(self.spec.bad_records, counts.skipped, tuple(counts.samples)))

    def first_maps(self, plan: list[ChunkRef], progress: Callable[[], None]) -> list[dict[int, bytes]]:
        """The first step's map tasks, one per input chunk: their blobs; `progress()` after each."""
        blobs: list[dict[int, bytes]] = []
        for i, ref in enumerate(plan):
            name, tag = self.spec.input_of(ref.input)

            def where(exc: Exception, ref: ChunkRef = ref) -> str:
                line = getattr(exc, "mrctl_line", None)
                return f"{display_path(ref.path)}, bytes {ref.start}-{ref.end}" + (
                    f", line {_line_of(ref, line)}" if line is not None else "")

            result = self._map(self._context(map_tid(i), display_path(name), tag), read_chunk(ref), ref.fmt, where)
            self._skipped(result, ref)
            blobs.append(result.blobs)
            self.run.records_in += result.records_in
            self.run.decode_errors += result.decode_errors
            self.run.count(maps_done=1, bytes_done=ref.size, map_records_out=result.records_out)
            progress()
            self._fail_if_too_many_skipped()
        return blobs

    def map_pairs(self, i: int, pairs: Pairs) -> dict[int, bytes]:
        """A later step's map task i: the previous step's output i, as (key, value) pairs."""
        data = tasks.pack_pairs(pairs)  # the blob a distributed run's map task i reads
        result = self._map(self._context(map_tid(i)), data, PAIRS, lambda exc: f"output {i} of the step before")
        self.run.count(maps_done=1, bytes_done=len(data), map_records_out=result.records_out)
        self._skipped(result)
        self._fail_if_too_many_skipped()
        return result.blobs

    def reduce_all(self, blobs: list[dict[int, bytes]]) -> list[Pairs]:
        """Reduce task r over partition r of every map task, in map order; a map-only step's
        outputs are its map tasks' pairs."""
        reducers = self.step.spec.reducers
        if not reducers:
            return [tasks.unpack_pairs(b[0]) if 0 in b else [] for b in blobs]
        outputs = []
        for r in range(reducers):
            tid = reduce_tid(r)
            reducer = with_context(self.classes.reducer, self._context(tid))
            groups = tasks.merge_blobs(b[r] for b in blobs if r in b)
            run = functools.partial(tasks.run_reduce, reducer, groups, self.step.spec.sort_values)
            outputs.append(self._task(tid, lambda exc, r=r: _partition_where(r, exc), run).pairs)
            self.run.count(reduces_done=1, records_out=len(outputs[-1]))
        return outputs


def _partition_where(r: int, exc: Exception) -> str:
    """`partition 2, key 'bb'`: a reduce task's input, and the key it failed on."""
    return f"partition {r}" + (f", key {tasks.key_excerpt(exc.mrctl_key)}" if hasattr(exc, "mrctl_key") else "")


def _sorted(counters: dict[tuple[str, str], int]) -> tuple[tuple[str, str, int], ...]:
    return tuple(sorted((g, n, v) for (g, n), v in counters.items()))


@dataclass
class _Counts:
    """The job's own counters and its skipped records, summed over tasks as the workers'
    commits sum them in Redis."""

    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    skipped: int = 0
    samples: list[SkippedRecord] = field(default_factory=list)

    def add(self, counters: dict[tuple[str, str], int]) -> None:
        for key, value in counters.items():
            self.counters[key] = self.counters.get(key, 0) + value

    def fields(self) -> dict:
        counters = tuple(sorted((g, n, v) for (g, n), v in self.counters.items()))
        return {"counters": counters, "bad_records": self.skipped,
                "bad_record_samples": tuple(self.samples)}


def _line_of(ref, index: int) -> int:
    with ref.path.open("rb") as f:
        return f.read(ref.start).count(b"\n") + index + 1
