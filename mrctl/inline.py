"""`--backend inline`: the job's classes run by a plain sequential loop in this process.

No Redis, no workers, no retries: mrjob's inline runner is the model. It is the quickest way
to debug a job or unit-test it, and the framework's own speed floor in benchmarks. Its output
is the same as a distributed run's, byte for byte, for a deterministic job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mrctl import tasks
from mrctl.bad_records import SAMPLES_KEPT, BadRecord, exceeded_message
from mrctl.chunks import ChunkRef, display_path, plan_chunks, read_chunk
from mrctl.errors import JobFailed, SpecError, bounded_message, bounded_traceback
from mrctl.job import TaskContext, with_context
from mrctl.loader import job_classes, load_module
from mrctl.output import write_output
from mrctl.snapshot import JobSnapshot, PhaseProgress
from mrctl.spec import JobSpec


def run_inline(spec: JobSpec, job_id: str, sink) -> JobSnapshot:
    import time

    t0 = time.monotonic()
    try:
        module = load_module(spec.module.name, spec.module.read_text(encoding="utf-8"))
        classes = job_classes(module, spec.mapper, spec.reducer, spec.combiner)
    except Exception as exc:
        raise SpecError(f"cannot load {spec.module}: {type(exc).__name__}: {exc}") from None
    plan = plan_chunks(spec.inputs, spec.chunk_size, spec.input_formats)
    total = sum(c.size for c in plan)
    blobs, records_in, done_bytes, bad = [], 0, 0, 0
    counts = _Counts()
    for i, ref in enumerate(plan):
        data = read_chunk(ref)
        name, tag = spec.input_of(ref.path)
        context = TaskContext(f"m:{i}", 1, spec.params, display_path(name), tag)
        combiner = with_context(classes.combiner, context) if classes.combiner else None
        try:
            result = tasks.run_map(with_context(classes.mapper, context), combiner, data,
                                   1 if spec.reducers else 0, spec.encoding_errors, ref.fmt,
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
        counts.add(context.counters, result, ref)
        snap = JobSnapshot(job_id, spec.name, "map", time.monotonic() - t0,
                           map=PhaseProgress(i + 1, len(plan), 1, done_bytes, total), **counts.fields())
        if spec.bad_records.exceeded(counts.skipped):
            failed = JobFailed(exceeded_message(spec.bad_records, counts.skipped, tuple(counts.samples)))
            failed.snapshot = dataclasses.replace(  # type: ignore[attr-defined]
                snap, phase="done", status="failed", error=str(failed))
            raise failed
        sink(snap)
    map_s = time.monotonic() - t0
    if classes.reducer is None:  # map-only: the map output, in input order
        pairs = [pair for blob in blobs for pair in tasks.unpack_pairs(blob)]
    else:
        context = TaskContext("r:0", 1, spec.params)
        pairs = tasks.run_reduce(with_context(classes.reducer, context), tasks.merge_blobs(blobs),
                                 spec.sort_values).pairs
        counts.add(context.counters)
    reduce_s = time.monotonic() - t0 - map_s
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
    )
    sink(final)
    return final


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
