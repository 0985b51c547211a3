"""`--backend inline`: the job's classes run by a plain sequential loop in this process.

No Redis, no workers, no retries: mrjob's inline runner is the model. It is the quickest way
to debug a job or unit-test it, and the framework's own speed floor in benchmarks. Its output
is the same as a distributed run's, byte for byte, for a deterministic job. A later step of a
multi-step job is one map task over every pair of the step before.
"""

from __future__ import annotations

import dataclasses
import time
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
from mrctl.snapshot import JobSnapshot, PhaseProgress
from mrctl.spec import JobSpec
from mrctl.steps import StepSpec, unroll


def run_inline(spec: JobSpec, job_id: str, sink) -> JobSnapshot:
    t0 = time.monotonic()
    plan = plan_chunks(spec.inputs, spec.chunk_size, spec.input_formats)
    total = sum(c.size for c in plan)
    counts = _Counts()
    done: list[dict[tuple[str, str], int]] = []  # each finished step's own counters
    pairs: list[tuple[Any, Any]] = []
    records_in, bad, map_s, reduce_s = 0, 0, 0.0, 0.0
    steps: list[tuple[str, float]] = []

    def last(n: int) -> dict[tuple[str, str], int]:
        summed: dict[tuple[str, str], int] = {}
        for counters in done[len(done) - n:] if n else ():
            for key, value in counters.items():
                summed[key] = summed.get(key, 0) + value
        return summed

    for step in unroll(spec.program, spec.params, last):
        began = time.monotonic()
        classes = _classes(step.spec)
        place = StepPlace(step.number, step.spec.name, step.iteration, last(1), last(len(done)))
        params = {**spec.params, **step.spec.params}
        mine: dict[tuple[str, str], int] = {}
        if step.first:
            blobs, records_in, bad = _first_maps(spec, plan, classes, step.spec, params, place, mine,
                                                 counts, sink, job_id, t0, total)
        else:
            context = TaskContext("m:0", 1, params, step=place, counters=mine)
            combiner = with_context(classes.combiner, context) if classes.combiner else None
            flat = codec.pack([x for pair in pairs for x in pair])
            blobs = list(tasks.run_map(with_context(classes.mapper, context), combiner, flat,
                                       1 if step.spec.reducers else 0, fmt=ChunkFormat("pairs")).blobs.values())
        map_s += time.monotonic() - began
        reduced = time.monotonic()
        if classes.reducer is None:  # map-only: the map output, in input order
            pairs = [pair for blob in blobs for pair in tasks.unpack_pairs(blob)]
        else:
            context = TaskContext("r:0", 1, params, step=place, counters=mine)
            pairs = tasks.run_reduce(with_context(classes.reducer, context), tasks.merge_blobs(blobs),
                                     step.spec.sort_values).pairs
        reduce_s += time.monotonic() - reduced
        counts.add(mine)
        done.append(mine)
        steps.append((step.label(), round(time.monotonic() - began, 3)))
    count = write_output(spec.output_path, iter(pairs), spec.output_format)
    elapsed = time.monotonic() - t0
    final = JobSnapshot(
        job_id, spec.name, "done", elapsed, status="succeeded",
        map=PhaseProgress(len(plan), len(plan), 0, total, total, 0.0, map_s),
        reduce=PhaseProgress(1, 1, 0, 0, 0, map_s, map_s + reduce_s),
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
        module = load_module(step.module.name, step.module.read_text(encoding="utf-8"))
        return job_classes(module, step.mapper, step.reducer, step.combiner)
    except Exception as exc:
        raise SpecError(f"cannot load {step.module}: {type(exc).__name__}: {exc}") from None


def _first_maps(spec: JobSpec, plan: list[ChunkRef], classes: JobClasses, step: StepSpec,
                params: dict[str, Any], place: StepPlace, mine: dict[tuple[str, str], int],
                counts: _Counts, sink, job_id: str, t0: float, total: int) -> tuple[list[bytes], int, int]:
    """The first step's map tasks, one per input chunk: (blobs, records in, decode errors)."""
    blobs: list[bytes] = []
    records_in, done_bytes, bad = 0, 0, 0
    for i, ref in enumerate(plan):
        data = read_chunk(ref)
        name, tag = spec.input_of(ref.path)
        context = TaskContext(f"m:{i}", 1, params, display_path(name), tag, step=place)
        combiner = with_context(classes.combiner, context) if classes.combiner else None
        try:
            result = tasks.run_map(with_context(classes.mapper, context), combiner, data,
                                   1 if step.reducers else 0, spec.encoding_errors, ref.fmt,
                                   skip_bad=spec.bad_records.skip)
        except Exception as exc:
            line = getattr(exc, "mrctl_line", None)
            where = f"{display_path(ref.path)}, bytes {ref.start}-{ref.end}" + (
                f", line {_line_of(ref, line)}" if line is not None else "")
            raise JobFailed(f"task m:{i} failed (inline, no retries)\n  input: {where}\n"
                            f"  error: {bounded_message(exc)}\n{bounded_traceback(exc)}") from None
        blobs.extend(result.blobs.values())
        records_in += result.records_in
        bad += result.decode_errors
        done_bytes += ref.size
        for key, value in context.counters.items():
            mine[key] = mine.get(key, 0) + value
        counts.add({}, result, ref)
        snap = JobSnapshot(job_id, spec.name, "map", time.monotonic() - t0,
                           map=PhaseProgress(i + 1, len(plan), 1, done_bytes, total),
                           **{**counts.fields(), "counters": tuple(sorted((g, n, v) for (g, n), v in mine.items()))})
        if spec.bad_records.exceeded(counts.skipped):
            failed = JobFailed(exceeded_message(spec.bad_records, counts.skipped, tuple(counts.samples)))
            failed.snapshot = dataclasses.replace(  # type: ignore[attr-defined]
                snap, phase="done", status="failed", error=str(failed))
            raise failed
        sink(snap)
    return blobs, records_in, bad


@dataclass
class _Counts:
    """The job's own counters and its skipped records, summed over tasks as the workers'
    commits sum them in Redis."""

    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    skipped: int = 0
    samples: list[BadRecord] = field(default_factory=list)

    def add(self, counters: dict[tuple[str, str], int], result: tasks.MapResult | None = None,
            ref: ChunkRef | None = None) -> None:
        for key, value in counters.items():
            self.counters[key] = self.counters.get(key, 0) + value
        if result is not None and ref is not None:
            self.skipped += result.bad_records
            for index, error in result.bad_samples[:SAMPLES_KEPT - len(self.samples)]:
                self.samples.append(BadRecord(display_path(ref.path), _line_of(ref, index), error))

    def fields(self) -> dict:
        counters = tuple(sorted((g, n, v) for (g, n), v in self.counters.items()))
        return {"counters": counters, "bad_records": self.skipped,
                "bad_record_samples": tuple(self.samples)}


def _line_of(ref, index: int) -> int:
    with ref.path.open("rb") as f:
        return f.read(ref.start).count(b"\n") + index + 1
