"""`--backend inline`: the job's classes run by a plain sequential loop in this process.

No Redis, no workers, no retries: mrjob's inline runner is the model. It is the quickest way
to debug a job or unit-test it, and the framework's own speed floor in benchmarks. Its output
is the same as a distributed run's, byte for byte, for a deterministic job.
"""

from __future__ import annotations

from mrctl import tasks
from mrctl.chunks import display_path, plan_chunks, read_chunk
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
    for i, ref in enumerate(plan):
        data = read_chunk(ref)
        name, tag = spec.input_of(ref.path)
        context = TaskContext(f"m:{i}", 1, spec.params, display_path(name), tag)
        combiner = with_context(classes.combiner, context) if classes.combiner else None
        try:
            result = tasks.run_map(with_context(classes.mapper, context), combiner, data, 1,
                                   spec.encoding_errors, ref.fmt)
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
        sink(JobSnapshot(job_id, spec.name, "map", time.monotonic() - t0,
                         map=PhaseProgress(i + 1, len(plan), 1, done_bytes, total)))
    map_s = time.monotonic() - t0
    reducer = with_context(classes.reducer, TaskContext("r:0", 1, spec.params))
    reduced = tasks.run_reduce(reducer, tasks.merge_blobs(blobs))
    reduce_s = time.monotonic() - t0 - map_s
    count = write_output(spec.output_path, iter(reduced.pairs), spec.output_format)
    elapsed = time.monotonic() - t0
    final = JobSnapshot(
        job_id, spec.name, "done", elapsed, status="succeeded",
        map=PhaseProgress(len(plan), len(plan), 0, total, total, 0.0, map_s),
        reduce=PhaseProgress(1, 1, 0, 0, 0, map_s, map_s + reduce_s),
        records_in=records_in, records_out=count, decode_errors=bad,
        phase_seconds=(("map", round(map_s, 3)), ("reduce", round(reduce_s, 3)),
                       ("output", round(elapsed - map_s - reduce_s, 3))),
        output_path=str(spec.output_path),
    )
    sink(final)
    return final


def _line_of(ref, index: int) -> int:
    with ref.path.open("rb") as f:
        return f.read(ref.start).count(b"\n") + index + 1
