"""A run on a cluster: the backend's cluster opened (and always torn down), the master driven
until the reduce phase is complete, the output written, workers supervised and replaced, chaos
and the web page's commands obeyed."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
from typing import TYPE_CHECKING, Any, Protocol

from mrctl.backends import WorkerExit
from mrctl.backends.supervision import CrashLoopGuard
from mrctl.broker import Broker, RedisLost
from mrctl.errors import Cancelled, JobFailed
from mrctl.io.output import write_output
from mrctl.master import signals
from mrctl.master.chaos import ChaosMonkey, ChaosPlan, busy_workers
from mrctl.master.live import LiveChannel
from mrctl.master.loop import Master
from mrctl.master.signals import SignalGuard
from mrctl.observe.snapshot import JobSnapshot
from mrctl.spec.jobspec import JobSpec

if TYPE_CHECKING:
    from mrctl.master.driver import RunOptions, SnapshotSink
    from mrctl.master.recorder import Trace

log = logging.getLogger(__name__)

# The master's reconnects after a lost connection to Redis: one carries it over a blip (redis-py
# retries the connect inside it once more); more only delay the end of a run whose Redis is gone.
# A lost swarm node's address takes up to socket_connect_timeout (5 s) per connect, and the two
# levels multiply: the default five held a run 48 s after the kill, two up to 35 s; one at most
# ~20 s (10 s to notice the silence, two connects).
MASTER_RETRIES = 1


class Cluster(Protocol):
    """What the master loop needs from a backend. Optionally also `redis_whereabouts() -> str |
    None`: where Redis ran, for a backend whose Redis may be lost with a machine (swarm)."""

    redis_url: str
    states: dict[str, str]

    def wait_ready(self, broker: Broker, timeout: float) -> None: ...
    def supervise(self) -> list[WorkerExit]: ...
    def replace(self, name: str) -> str: ...
    def kill_worker(self, name: str) -> None: ...


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


class ClusterRunner:
    """A run on a cluster (docker, swarm, local, or a warm one): its master, in this process,
    drives the workers through Redis; the cluster is always torn down (a warm one stays)."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.master: Master | None = None  # once the cluster is up

    def run(self, spec: JobSpec, job_id: str, t0: float, state: dict[str, Any], sink: SnapshotSink) -> JobSnapshot:
        options = self.options
        with SignalGuard():
            # shown once the guard is in place: a signal sent on seeing the first phase (as a
            # user or a test may) is an interrupted run, recorded, never an uncaught one
            sink(state["last"])
            with open_cluster(spec, options, job_id) as cluster:
                if options.cluster is not None:  # feed as many workers as the warm cluster has
                    spec = dataclasses.replace(spec, workers=cluster.spec.workers)
                broker = Broker(cluster.redis_url, retries=MASTER_RETRIES)
                self.master = Master(spec, broker, job_id, t0=t0, lease_s=options.lease_s,
                                     window=options.window_bytes, worker_output=options.worker_output)
                final = _run_on(self.master, cluster, options, state, sink)
                teardown_from = time.monotonic()
            teardown_s = round(time.monotonic() - teardown_from, 3)
        final = dataclasses.replace(
            final, phase="done", elapsed=time.monotonic() - t0,
            phase_seconds=final.phase_seconds + (("teardown", teardown_s),),
        )
        sink(final)
        return final

    def trace(self, snap: JobSnapshot) -> Trace | None:
        from mrctl.master import recorder

        return recorder.of_master(self.master) if self.master else None


def _run_on(master: Master, cluster: Cluster, options: RunOptions, state: dict[str, Any],
            sink: SnapshotSink) -> JobSnapshot:
    try:
        return _run_with(master, cluster, options, state, sink)
    except RedisLost as exc:
        where = getattr(cluster, "redis_whereabouts", lambda: None)()
        if where is None:
            raise
        raise RedisLost(f"{str(exc).rstrip('.')}. {where}, which stopped answering: the job's state was in "
                        "that Redis and went with it; run the job again") from None


def _run_with(master: Master, cluster: Cluster, options: RunOptions, state: dict[str, Any],
              sink: SnapshotSink) -> JobSnapshot:
    spec, broker = master.spec, master.broker
    redis_gone = False
    try:
        signals.check()
        master.start()
        cluster.wait_ready(broker, options.ready_timeout_s)
        _drive(master, cluster, options, state, sink)
        signals.check()  # a signal dropped in the last tick is not a written output
        master.set_phase("output")
        state["last"] = master.snapshot(cluster.states)
        sink(state["last"])
        write_output(spec.output_path, master.output_pairs(), spec.output_format, state["last"].records_out)
    except RedisLost:
        redis_gone = True  # asking it for the last attempts would only wait out the retries again
        raise
    finally:
        master.close()  # what was spilled to disk goes, whatever happened
        if not redis_gone:
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
        signals.check()
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
            if victim := monkey.victim(state["last"], cluster.states):
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
    busy = busy_workers(snap, cluster.states)
    for command in commands:
        if command == "cancel":
            master.add_event("cancelled", "cancelled from the web page")
            raise Cancelled()
        if command == "kill" and busy:
            _kill(master, cluster, busy.pop(random.randrange(len(busy))), " (web page)")
        elif command == "kill":
            master.add_event("info", "web page: no busy worker to kill")
