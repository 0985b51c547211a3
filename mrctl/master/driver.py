"""`run_job`: the Python API under `mrctl run`, and a run's lifecycle on every backend.

Each backend is run through one interface, a Runner: a ClusterRunner (mrctl.master.cluster_run)
starts the cluster (docker, swarm, local, or attaches to a warm one), drives the master until
the reduce phase is complete, writes the output atomically and tears the cluster down, whatever
happens; the InlineRunner runs the same job classes one task after another in this process
(mrctl.backends.inline). Either way the run's failure carries its last snapshot and the run is
recorded in the history.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mrctl.backends import spill_dirs
from mrctl.errors import Cancelled, Interrupted, MrctlError, SpecError
from mrctl.master.chaos import ChaosPlan
from mrctl.master.cluster_run import ClusterRunner
from mrctl.observe.record import RunRecord
from mrctl.observe.snapshot import JobSnapshot
from mrctl.spec.inputs import named_twice
from mrctl.spec.jobspec import JobSpec

if TYPE_CHECKING:
    from mrctl.backends.inline import InlineTrace
    from mrctl.master.recorder import Trace

log = logging.getLogger(__name__)

SnapshotSink = Callable[[JobSnapshot], None]
RecordSink = Callable[[RunRecord], None]


@dataclass(frozen=True)
class RunOptions:
    keep: bool = False  # leave the cluster running after the job (docker backend)
    redis_memory: str = "1gb"  # Redis maxmemory (noeviction: full means the job fails)
    tick_s: float = 0.1  # longest wait between master ticks (a commit wakes it at once)
    snapshot_s: float = 0.2  # how often views get a fresh snapshot
    offline: bool | None = None  # docker images: None = pull if possible, else build locally
    ready_timeout_s: float = 60.0
    lease_s: float = 10.0  # a worker silent this long loses its task (heartbeats every lease/3)
    chaos: ChaosPlan = ChaosPlan()  # kill random busy workers during the run (--chaos)
    worker_output: bool = False  # show what the job's code prints in workers (--worker-output)
    window_bytes: int = 0  # input queued ahead in Redis; 0: 2 chunks a worker, at least 8 MiB
    cluster: str | None = None  # run on this warm cluster (mrctl up): no start, no teardown
    docker_host: str | None = None  # the engine (docker, swarm backends): None = DOCKER_HOST or local
    registry: str | None = None  # swarm: push the images there for every node to pull (--registry)
    encrypted_overlay: bool = False  # swarm: IPsec on the overlay between nodes (--encrypted-overlay)


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


class Runner(Protocol):
    """One run on one backend: every backend is run through this same call, inline included,
    as mrjob's runners share one. `state["last"]` holds the latest snapshot, for the record of
    a run that fails; `trace` is what the run kept of its attempts, for the history (None when
    it ended before it began)."""

    def run(self, spec: JobSpec, job_id: str, t0: float, state: dict[str, Any],
            sink: SnapshotSink) -> JobSnapshot: ...
    def trace(self, snap: JobSnapshot) -> Trace | None: ...


class InlineRunner:
    """`--backend inline`: the job's classes run one task after another in this process
    (mrctl.backends.inline), with no Redis and no workers."""

    def __init__(self) -> None:
        self.kept: InlineTrace | None = None  # its attempts and barriers, once it runs

    def run(self, spec: JobSpec, job_id: str, t0: float, state: dict[str, Any], sink: SnapshotSink) -> JobSnapshot:
        from mrctl.backends.inline import InlineTrace, run_inline

        def keep(snap: JobSnapshot) -> None:
            state["last"] = snap
            sink(snap)

        self.kept = InlineTrace(t0)
        return run_inline(spec, job_id, keep, self.kept)

    def trace(self, snap: JobSnapshot) -> Trace | None:
        from mrctl.master import recorder

        return recorder.of_inline(self.kept, snap) if self.kept else None


def run_job(spec: JobSpec, options: RunOptions = RunOptions(),
            on_snapshot: SnapshotSink | None = None, on_record: RecordSink | None = None) -> JobSnapshot:
    """Run a job to completion and return its final snapshot.

    Raises JobFailed (a task failed on every attempt), InfraError (Redis, Docker, redis-server),
    Interrupted (SIGINT/SIGTERM) or Cancelled (from the web page, mrctl.web); each carries the
    final snapshot as `.snapshot`. No partial output file is ever left behind, and every
    process/container started is stopped. However it ends, the run is recorded in the history
    (mrctl.observe.history) and its record, with every attempt, is given to `on_record`.
    """
    state: dict[str, Any] = {}
    started_at = time.time()
    try:
        final = _run_job(spec, options, on_snapshot, state)
    except MrctlError as exc:
        _record(spec, options, getattr(exc, "snapshot", None), started_at, state, on_record, exc.exit_code)
        raise
    _record(spec, options, final, started_at, state, on_record, 0)
    return final


def _record(spec: JobSpec, options: RunOptions, snap: JobSnapshot | None, started_at: float,
            state: dict[str, Any], on_record: RecordSink | None, exit_code: int) -> None:
    from mrctl.master import recorder

    if snap is None:  # failed before the run began (a spec or image problem): nothing ran
        return
    trace = state["runner"].trace(snap) if "runner" in state else None
    run = recorder.build(spec, snap, started_at, trace, exit_code, options.redis_memory)
    recorder.save(run)
    if on_record is not None:
        on_record(run)


def _run_job(spec: JobSpec, options: RunOptions, on_snapshot: SnapshotSink | None,
             state: dict[str, Any]) -> JobSnapshot:
    sink = on_snapshot or (lambda snap: None)
    if options.cluster is not None:  # a warm cluster is a Docker one, whatever the spec says
        spec = dataclasses.replace(spec, backend="docker")
    swarm_only = [flag for flag, given in (("--registry", options.registry),
                                           ("--encrypted-overlay", options.encrypted_overlay)) if given]
    if swarm_only and spec.backend != "swarm":  # refused before anything starts: nothing to record
        raise SpecError(f"{' and '.join(swarm_only)} {'is' if len(swarm_only) == 1 else 'are'} for the swarm "
                        f"backend (its nodes); this run's backend is {spec.backend}"
                        f"{' (a warm cluster)' if options.cluster else ''}")
    job_id = new_job_id()
    t0 = time.monotonic()
    spill_dirs.remove_strays()  # of masters killed outright: their runs are over
    state["last"] = JobSnapshot(job_id, spec.name, "starting", 0.0)
    repeated = named_twice(spec.inputs, spec.input_names or tuple(map(str, spec.inputs)))
    if repeated:  # read twice, as the peers do, but never without a word
        log.warning("%s", repeated)
    if spec.placement and spec.backend != "swarm":  # as docker compose up ignores deploy.placement
        log.warning("workers.placement (%s) is for the swarm backend: the %s backend runs every worker "
                    "in one place and ignores it", spec.placement.describe(), spec.backend)
    runner = InlineRunner() if spec.backend == "inline" else ClusterRunner(options)
    state["runner"] = runner
    try:
        return runner.run(spec, job_id, t0, state, sink)
    except KeyboardInterrupt:
        raise _with_snapshot(Interrupted(2), state, t0) from None
    except MrctlError as exc:
        raise _with_snapshot(exc, state, t0) from None


def _with_snapshot(exc: MrctlError, state: dict[str, Any], t0: float) -> MrctlError:
    status = ("cancelled" if isinstance(exc, Cancelled) else
              "interrupted" if isinstance(exc, Interrupted) else "failed")
    last: JobSnapshot = state["last"]
    exc.snapshot = dataclasses.replace(  # type: ignore[attr-defined]
        last, status=status, error=str(exc), elapsed=time.monotonic() - t0, phase="done")
    return exc
