"""The Python API: `mrctl.run` runs a job the way `mrctl run` does and returns its result.

    result = mrctl.run("jobspecs/wordcount.yaml", backend="local", workers=2, params={"top": 10})
    assert result.status == "succeeded"
    counts = dict(result.pairs())

Failures raise mrctl's typed exceptions (JobFailed, SpecError, InfraError, Interrupted), each
with `.snapshot`, the job as it ended; a failed run leaves no output file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrctl.errors import MrctlError, SpecError
from mrctl.io.output import read_output
from mrctl.master.driver import run_job
from mrctl.master.options import BY_NAME, ResolvedRun, resolve
from mrctl.observe.snapshot import JobSnapshot
from mrctl.observe.views import counters_dict
from mrctl.spec.jobspec import JobSpec

if TYPE_CHECKING:
    from mrctl.observe.reporters import Reporter


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


def run(spec: str | Path | JobSpec, **options: Any) -> RunResult:
    """Run a job spec (a path, or a JobSpec) to completion, as `mrctl run` does.

    `options` are `mrctl run`'s flags by their names (`--chunk-size 64KiB` is chunk_size="64KiB"),
    checked as the command line checks them, with the same messages (a SpecError); see
    mrctl.master.options for the list. Also: `inputs=` for `input=` (a path or a list) and `params=`
    (a dict) beside `param=` ("NAME=VALUE" strings). Nothing is shown unless plain=, json= or
    quiet= asks for the command's view; ui= serves the run's page (its URL is logged).
    """
    given = dict(options)
    for alias, name in _ALIASES.items():
        if alias in given:
            value = given.pop(alias)
            given[name] = [*(value.items() if isinstance(value, dict) else _listed(value)), *_listed(given.get(name))]
    unknown = sorted(set(given) - set(BY_NAME))
    if unknown:
        raise SpecError(f"mrctl.run: unknown setting {unknown[0]!r}; expected one of "
                        f"{', '.join(sorted({*BY_NAME, *_ALIASES}))}")
    resolved = resolve(spec, given)
    final = run_shown(resolved, _reporter(resolved.view.mode))
    return RunResult(final.status, resolved.job.output_path, resolved.job.output_format, final)


_ALIASES = {"inputs": "input", "params": "param"}  # Python's plurals: a list, a dict


def _listed(value: Any) -> list[Any]:
    return [] if value is None else [value] if isinstance(value, str | Path) else list(value)


def _reporter(mode: str | None) -> Reporter | None:
    if mode is None:
        return None
    import os
    import sys

    from mrctl.observe.reporters import choose_reporter

    return choose_reporter(mode, sys.stdout, sys.stderr, os.environ)


def run_shown(run: ResolvedRun, reporter: Reporter | None = None) -> JobSnapshot:
    """Run a resolved run (mrctl.master.options) to completion with its view: the reporter sees every
    snapshot and the end, however it ends; the run's page serves while it runs (ui); its
    timeline is drawn when it ends (timeline)."""
    from mrctl.observe.timeline import drawer

    if reporter is not None:
        reporter.start()
    try:
        with contextlib.ExitStack() as stack:
            sink = reporter.update if reporter is not None else None
            if run.view.ui:
                from mrctl.web.server import RunPage

                sink = stack.enter_context(RunPage()).watch(sink or (lambda snap: None))
            final = run_job(run.job, run.options, on_snapshot=sink, on_record=drawer(run.view.timeline))
    except MrctlError as exc:
        if reporter is not None and (snapshot := getattr(exc, "snapshot", None)) is not None:
            reporter.finish(snapshot)
        raise
    else:
        if reporter is not None:
            reporter.finish(final)
    finally:
        if reporter is not None:
            reporter.close()
    return final
