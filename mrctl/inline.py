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

from mrctl import codec, tasks
from mrctl.bad_records import SAMPLES_KEPT, BadRecord, exceeded_message
from mrctl.chunks import ChunkRef, display_path, plan_chunks, read_chunk
from mrctl.errors import JobFailed, SpecError, bounded_message, bounded_traceback
from mrctl.formats import ChunkFormat
from mrctl.job import StepPlace, TaskContext, with_context
from mrctl.loader import JobClasses, job_classes, load_module
from mrctl.output import write_output
from mrctl.record import Attempt
from mrctl.snapshot import JobSnapshot, PhaseProgress
from mrctl.spec import JobSpec
from mrctl.steps import RunStep, StepSpec, unroll

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
    trace = trace or InlineTrace()
    t0 = trace.t0
    plan = plan_chunks(spec.inputs, spec.chunk_size, spec.input_formats)
    total = sum(c.size for c in plan)
    counts = _Counts()
    done: list[dict[tuple[str, str], int]] = []  # each finished step's own counters
    outputs: list[Pairs] = []  # the last step's outputs: one per reduce partition (or map task)
    records_in, bad, map_s, reduce_s = 0, 0, 0.0, 0.0
    steps: list[tuple[str, float]] = []

    def last(n: int) -> dict[tuple[str, str], int]:
        summed: dict[tuple[str, str], int] = {}
        for counters in done[len(done) - n:] if n else ():
            for key, value in counters.items():
                summed[key] = summed.get(key, 0) + value
        return summed

    step: RunStep | None = None
    for step in unroll(spec.program, spec.params, last):
        began = time.monotonic()
        run = _Step(spec, step, _classes(step.spec), last(1), last(len(done)), counts, trace)
        if step.first:
            def progress(tasks_done: int, bytes_done: int, run: _Step = run) -> None:
                sink(JobSnapshot(job_id, spec.name, "map", time.monotonic() - t0,
                                 map=PhaseProgress(tasks_done, len(plan), 1, bytes_done, total),
                                 **{**counts.fields(), "counters": _sorted(run.counters)}))

            blobs, records_in, bad = run.first_maps(plan, progress)
        else:
            blobs = [run.map_pairs(i, pairs) for i, pairs in enumerate(outputs)]
        map_s += time.monotonic() - began
        trace.barriers.append(time.monotonic() - t0)
        reduced = time.monotonic()
        outputs = run.reduce_all(blobs)
        reduce_s += time.monotonic() - reduced
        counts.add(run.counters)
        done.append(run.counters)
        steps.append((step.label(), round(time.monotonic() - began, 3)))
    assert step is not None  # a program has at least one step
    if step.spec.reducers:  # merged in key order, as the master merges reduce outputs
        pairs = heapq.merge(*outputs, key=lambda kv: codec.sort_key(kv[0]))
    else:  # map-only: every map task's pairs, in input order
        pairs = itertools.chain.from_iterable(outputs)
    count = write_output(spec.output_path, pairs, spec.output_format)
    elapsed = time.monotonic() - t0
    final = JobSnapshot(
        job_id, spec.name, "done", elapsed, status="succeeded",
        map=PhaseProgress(len(plan), len(plan), 0, total, total, 0.0, map_s),
        reduce=PhaseProgress(step.spec.reducers, step.spec.reducers, 0, 0, 0, map_s, map_s + reduce_s),
        records_in=records_in, records_out=count, decode_errors=bad,
        phase_seconds=(("map", round(map_s, 3)), ("reduce", round(reduce_s, 3)),
                       ("output", round(elapsed - map_s - reduce_s, 3))),
        output_path=str(spec.output_path), **counts.fields(),
        step=step.number, steps=step.planned, step_name=step.spec.name, iteration=step.iteration,
        iterations=step.iterations, step_seconds=tuple(steps) if step.planned > 1 else (),
    )
    sink(final)
    return final


def _classes(step: StepSpec) -> JobClasses:
    try:
        module = load_module(display_path(step.module), step.module.read_text(encoding="utf-8"))
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
    counts: _Counts
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
        counts = self.counts
        counts.skipped += result.bad_records
        for index, error in result.bad_samples[:SAMPLES_KEPT - len(counts.samples)] if ref else ():
            counts.samples.append(BadRecord(display_path(ref.path), _line_of(ref, index), error))

    def _fail_if_too_many_skipped(self) -> None:
        """Past the spec's bad_records max, over every step so far, the job fails."""
        counts = self.counts
        if self.spec.bad_records.exceeded(counts.skipped):
            raise JobFailed(exceeded_message(self.spec.bad_records, counts.skipped, tuple(counts.samples)))

    def first_maps(self, plan: list[ChunkRef], progress: Callable[[int, int], None]) -> tuple[list[dict], int, int]:
        """The first step's map tasks, one per input chunk: (blobs, records in, decode errors);
        `progress(tasks done, bytes done)` after each."""
        blobs: list[dict[int, bytes]] = []
        records_in, done_bytes, bad = 0, 0, 0
        for i, ref in enumerate(plan):
            name, tag = self.spec.input_of(ref.path)

            def where(exc: Exception, ref: ChunkRef = ref) -> str:
                line = getattr(exc, "mrctl_line", None)
                return f"{display_path(ref.path)}, bytes {ref.start}-{ref.end}" + (
                    f", line {_line_of(ref, line)}" if line is not None else "")

            result = self._map(self._context(f"m:{i}", display_path(name), tag), read_chunk(ref), ref.fmt, where)
            self._skipped(result, ref)
            blobs.append(result.blobs)
            records_in += result.records_in
            bad += result.decode_errors
            done_bytes += ref.size
            progress(i + 1, done_bytes)
            self._fail_if_too_many_skipped()
        return blobs, records_in, bad

    def map_pairs(self, i: int, pairs: Pairs) -> dict[int, bytes]:
        """A later step's map task i: the previous step's output i, as (key, value) pairs."""
        flat = codec.pack(list(itertools.chain.from_iterable(pairs)))
        result = self._map(self._context(f"m:{i}"), flat, PAIRS, lambda exc: f"output {i} of the step before")
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
            reducer = with_context(self.classes.reducer, self._context(f"r:{r}"))
            groups = tasks.merge_blobs(b[r] for b in blobs if r in b)
            run = functools.partial(tasks.run_reduce, reducer, groups, self.step.spec.sort_values)
            outputs.append(self._task(f"r:{r}", lambda exc, r=r: _partition_where(r, exc), run).pairs)
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
    samples: list[BadRecord] = field(default_factory=list)

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
