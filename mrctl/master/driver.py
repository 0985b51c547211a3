"""`run_job`: the Python API under `mrctl run`.

It starts a cluster (docker or local backend), drives the master until the reduce phase is
complete, writes the output atomically and tears the cluster down, whatever happens. The
`inline` backend runs the same job classes sequentially in this process (see mrctl.backends.inline).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mrctl.backends import WorkerExit, spill_dirs
from mrctl.backends.supervision import CrashLoopGuard
from mrctl.broker import Broker
from mrctl.errors import Cancelled, Interrupted, JobFailed, MrctlError, SpecError
from mrctl.io.output import write_output
from mrctl.master.chaos import ChaosMonkey, ChaosPlan, busy_workers
from mrctl.master.live import LiveChannel
from mrctl.master.loop import Master
from mrctl.master.signals import SignalGuard
from mrctl.observe.record import RunRecord
from mrctl.observe.snapshot import JobSnapshot
from mrctl.spec.inputs import named_twice
from mrctl.spec.jobspec import JobSpec

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


class Cluster(Protocol):
    """What the master loop needs from a backend."""

    redis_url: str
    states: dict[str, str]

    def wait_ready(self, broker: Broker, timeout: float) -> None: ...
    def supervise(self) -> list[WorkerExit]: ...
    def replace(self, name: str) -> str: ...
    def kill_worker(self, name: str) -> None: ...


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def open_cluster(spec: JobSpec, options: RunOptions, job_id: str) -> contextlib.AbstractContextManager:
    """The backend's cluster as a context manager that always tears down (a warm cluster:
    that always unlocks and drops the job's keys, and stays)."""
    if options.cluster is not None:
        from mrctl.backends.warm import AttachedCluster

        return AttachedCluster(options.cluster, job_id, spec.name, options.docker_host)
    if spec.backend == "local":
        from mrctl.backends.local import LocalCluster

        return LocalCluster(spec.workers, options.redis_memory, spec.name, job_id)
    if spec.backend == "swarm":
        from mrctl.backends.swarm import SwarmCluster

        return SwarmCluster(spec, job_id, options.redis_memory, keep=options.keep, offline=options.offline,
                            docker_host=options.docker_host, registry=options.registry,
                            encrypted_overlay=options.encrypted_overlay)
    from mrctl.backends.docker import DockerCluster

    return DockerCluster(spec, job_id, options.redis_memory, keep=options.keep, offline=options.offline,
                         docker_host=options.docker_host)


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
    if "master" in state:
        trace = recorder.of_master(state["master"])
    elif "inline" in state:
        trace = recorder.of_inline(state["inline"], snap)
    else:
        trace = None
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
    if spec.backend == "inline":
        from mrctl.backends.inline import InlineTrace, run_inline

        def keep(snap: JobSnapshot) -> None:
            state["last"] = snap
            sink(snap)

        try:
            state["inline"] = InlineTrace(t0)
            return run_inline(spec, job_id, keep, state["inline"])
        except MrctlError as exc:
            raise _with_snapshot(exc, state, t0) from None
    try:
        with SignalGuard():
            # shown once the guard is in place: a signal sent on seeing the first phase (as a
            # user or a test may) is an interrupted run, recorded, never an uncaught one
            sink(state["last"])
            with open_cluster(spec, options, job_id) as cluster:
                if options.cluster is not None:  # feed as many workers as the warm cluster has
                    spec = dataclasses.replace(spec, workers=cluster.spec.workers)
                final = _run_on(cluster, spec, options, job_id, t0, state, sink)
                teardown_from = time.monotonic()
            teardown_s = round(time.monotonic() - teardown_from, 3)
        final = dataclasses.replace(
            final, phase="done", elapsed=time.monotonic() - t0,
            phase_seconds=final.phase_seconds + (("teardown", teardown_s),),
        )
        sink(final)
        return final
    except KeyboardInterrupt:
        raise _with_snapshot(Interrupted(2), state, t0) from None
    except MrctlError as exc:
        raise _with_snapshot(exc, state, t0) from None


def _run_on(cluster: Cluster, spec: JobSpec, options: RunOptions, job_id: str, t0: float,
            state: dict[str, Any], sink: SnapshotSink) -> JobSnapshot:
    broker = Broker(cluster.redis_url)
    master = Master(spec, broker, job_id, t0=t0, lease_s=options.lease_s, window=options.window_bytes,
                    worker_output=options.worker_output)
    state["master"] = master
    try:
        master.start()
        cluster.wait_ready(broker, options.ready_timeout_s)
        _drive(master, cluster, options, state, sink)
        master.set_phase("output")
        state["last"] = master.snapshot(cluster.states)
        sink(state["last"])
        write_output(spec.output_path, master.output_pairs(), spec.output_format, state["last"].records_out)
    finally:
        master.close()  # what was spilled to disk goes, whatever happened
        _take_last_attempts(master)  # while Redis is still there
    master.finish("succeeded")
    master.set_phase("teardown")
    snap = master.snapshot(cluster.states, status="succeeded")
    state["last"] = snap
    sink(snap)
    broker.close()
    return dataclasses.replace(snap, phase_seconds=snap.phase_seconds[:-1])


def _take_last_attempts(master: Master) -> None:
    """The attempt log's last entries, for the record; never the run's failure."""
    try:
        master.take_attempts()
    except Exception:  # noqa: BLE001 - a Redis gone or full: the record keeps what was taken
        log.debug("the last attempt log entries were not taken", exc_info=True)


def _drive(master: Master, cluster: Cluster, options: RunOptions,
           state: dict[str, Any], sink: SnapshotSink) -> None:
    next_snapshot = 0.0
    monkey = ChaosMonkey(options.chaos)
    guard = CrashLoopGuard(master.spec.max_worker_restarts)
    live = LiveChannel(master.broker, master.job_id)  # the web page's view and commands
    while True:
        try:
            done = master.tick()
        except JobFailed:
            state["last"] = master.snapshot(cluster.states)  # the counts that failed it
            raise
        for exit in cluster.supervise():
            guard.check(exit, did_work=master.worker_lost(exit))  # InfraError on a crash loop
            master.worker_replaced(exit, cluster.replace(exit.name))
        now = time.monotonic()
        if done or now >= next_snapshot:
            state["last"] = master.snapshot(cluster.states)
            sink(state["last"])
            live.publish(state["last"])
            next_snapshot = now + options.snapshot_s
            if victim := monkey.victim(state["last"]):
                _kill(master, cluster, victim)
            _obey(live.commands(), master, cluster, state["last"])
        if done:
            if len(monkey.killed) < options.chaos.kills:
                _chaos_cut_short(master, cluster, options.chaos, len(monkey.killed), state)
            return
        master.wait(min(options.tick_s, max(0.0, next_snapshot - time.monotonic())))


def _chaos_cut_short(master: Master, cluster: Cluster, plan: ChaosPlan, made: int, state: dict[str, Any]) -> None:
    """Say so when the job ended before --chaos made its kills (a short job on tiny input)."""
    message = (f"chaos: {made} of {plan.kills} kills made: the job ended first (a kill is due {plan.every_s:g}s "
               "into the map phase and after each kill, and only a busy worker is killed); give it more input "
               f"or a smaller chunk_size, or a shorter interval (--chaos kill={plan.kills},every=0.2)")
    log.warning("%s", message)
    master.add_event("chaos", message)
    state["last"] = master.snapshot(cluster.states)


def _kill(master: Master, cluster: Cluster, victim: str, why: str = "") -> None:
    cluster.kill_worker(victim)
    master.killed += 1
    master.add_event("chaos", f"chaos: killed {victim}{why}")


def _obey(commands: list[str], master: Master, cluster: Cluster, snap: JobSnapshot) -> None:
    """Carry out the web page's commands: cancel stops the run like a Ctrl-C (Cancelled unwinds
    through every teardown); kill kills a random busy worker, as --chaos does."""
    busy = busy_workers(snap)
    for command in commands:
        if command == "cancel":
            master.add_event("cancelled", "cancelled from the web page")
            raise Cancelled()
        if command == "kill" and busy:
            _kill(master, cluster, busy.pop(random.randrange(len(busy))), " (web page)")
        elif command == "kill":
            master.add_event("info", "web page: no busy worker to kill")


def _with_snapshot(exc: MrctlError, state: dict[str, Any], t0: float) -> MrctlError:
    status = ("cancelled" if isinstance(exc, Cancelled) else
              "interrupted" if isinstance(exc, Interrupted) else "failed")
    last: JobSnapshot = state["last"]
    exc.snapshot = dataclasses.replace(  # type: ignore[attr-defined]
        last, status=status, error=str(exc), elapsed=time.monotonic() - t0, phase="done")
    return exc
