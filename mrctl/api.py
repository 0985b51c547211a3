"""The Python API: `mrctl.run` runs a job the way `mrctl run` does and returns its result.

    result = mrctl.run("jobspecs/wordcount.yaml", backend="local", workers=2, params={"top": 10})
    assert result.status == "succeeded"
    counts = dict(result.pairs())

Failures raise mrctl's typed exceptions (JobFailed, SpecError, InfraError, Interrupted), each
with `.snapshot`, the job as it ended; a failed run leaves no output file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrctl.errors import SpecError
from mrctl.output import read_output
from mrctl.runner import RunOptions, run_job
from mrctl.sizes import parse_redis_memory
from mrctl.snapshot import JobSnapshot
from mrctl.spec import JobSpec, Overrides, load_spec
from mrctl.view import counters_dict

_RUN_OPTIONS = {"keep", "redis_memory", "offline", "worker_output", "cluster"}


@dataclass(frozen=True)
class RunResult:
    status: str  # "succeeded" (a failure raises)
    output_path: Path
    output_format: str
    snapshot: JobSnapshot  # everything the summary shows: phases, tasks, retries, events

    @property
    def counters(self) -> dict[str, dict[str, int]]:
        """The job's own counters by group and name (Mapper/Reducer.increment_counter)."""
        return counters_dict(self.snapshot)

    def pairs(self) -> Iterator[tuple[Any, Any]]:
        """The output's (key, value) pairs, read back from the file (see mrctl.read_output)."""
        return read_output(self.output_path, self.output_format)


def run(spec: str | Path | JobSpec, **overrides: Any) -> RunResult:
    """Run a job spec (a path, or a JobSpec) to completion, as `mrctl run` does.

    `overrides` are the command line's flags by their Python names: inputs (a path or a list),
    output, workers, reducers, chunk_size, backend, task_timeout, max_attempts,
    max_worker_restarts, speculative, encoding_errors, params (a dict, over the spec's), keep,
    redis_memory, offline, worker_output, cluster (the name of a warm cluster, see `mrctl up`:
    the job runs there, with no start and no teardown).
    """
    options = RunOptions(**{k: overrides.pop(k) for k in list(overrides) if k in _RUN_OPTIONS})
    if options.cluster is not None:
        from mrctl.backends.warm import check_run

        check_run(options.cluster, options.keep, overrides.get("backend"), overrides.get("workers"))
    if options.redis_memory != RunOptions().redis_memory:
        options = dataclasses.replace(options, redis_memory=parse_redis_memory(options.redis_memory))
    job = _with_overrides(spec, overrides)
    final = run_job(job, options)
    return RunResult(final.status, job.output_path, job.output_format, final)


def _with_overrides(spec: str | Path | JobSpec, overrides: dict[str, Any]) -> JobSpec:
    fields = {f.name for f in dataclasses.fields(Overrides)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise SpecError(f"mrctl.run: unknown setting {unknown[0]!r}; expected one of "
                        f"{', '.join(sorted(fields | _RUN_OPTIONS))}")
    if isinstance(overrides.get("inputs"), str | Path):
        overrides["inputs"] = (overrides["inputs"],)
    overrides["inputs"] = tuple(str(p) for p in overrides.get("inputs", ()))
    overrides["params"] = tuple((overrides.get("params") or {}).items())
    if isinstance(spec, JobSpec):
        return _replace(spec, overrides)
    return load_spec(spec, Overrides(**overrides))


def _replace(spec: JobSpec, overrides: dict[str, Any]) -> JobSpec:
    """Overrides on an already loaded JobSpec: plain settings only (paths stay the spec's)."""
    changes = {k: v for k, v in overrides.items() if v not in (None, ()) and k not in ("inputs", "output")}
    if "params" in changes:
        changes["params"] = {**spec.params, **dict(changes["params"])}
    if overrides.get("inputs") or overrides.get("output"):
        raise SpecError("mrctl.run: give inputs/output with a spec path, or set them on the JobSpec")
    return dataclasses.replace(spec, **changes)
