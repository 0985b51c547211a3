"""Clusters that exist on the Docker engine, found by label: status, logs and removal.

These functions serve `mrctl status`, `mrctl logs` and `mrctl down`, including from another
terminal while `mrctl run` is going and after `--keep` or a SIGKILLed master. They never touch
an object without mrctl's `mrctl.cluster` label. `down` also cleans the leftovers of local
clusters whose master died (mrctl.backends.local_registry), with or without a Docker engine.
A cluster's Redis password comes from the state file of the user who started it
(mrctl.backends.credentials), never from the engine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from mrctl.backends import credentials, local_registry, spill_dirs
from mrctl.backends.docker import REDIS_PORT, extra_labels, redis_url, remove_cluster, short_name
from mrctl.backends.local_registry import Cleanup, LocalRecord
from mrctl.backends.master_id import ELSEWHERE, GONE, KEPT_ROLE, Master, kept_volume
from mrctl.backends.spill_dirs import Stray
from mrctl.backends.swarm_tasks import display_name, swarm_logs
from mrctl.backends.warm import WARM_LABEL, is_warm
from mrctl.broker import Broker
from mrctl.broker.meta import JobMeta
from mrctl.dockerapi import swarm as dockerswarm
from mrctl.dockerapi.host import (
    LABEL_BACKEND,
    LABEL_CLUSTER,
    LABEL_JOB,
    LABEL_JOB_ID,
    LABEL_ROLE,
    ContainerInfo,
    DockerHost,
)
from mrctl.errors import InfraError, SpecError
from mrctl.observe.snapshot import WorkerRow
from mrctl.spec.steps import step_label

HISTORY_SHOWN = 10  # of a warm cluster's recent jobs, in `mrctl status` (--json: all kept)


@dataclass(frozen=True)
class WarmJob:
    """A job a warm cluster ran (its history in Redis, newest first)."""

    job: str
    name: str
    state: str  # succeeded | failed | interrupted
    elapsed: float
    finished: float  # epoch seconds


@dataclass(frozen=True)
class ClusterStatus:
    cluster: str
    job_name: str
    job_id: str
    phase: str  # from Redis; "unknown" when Redis cannot be read
    state: str
    map_done: int
    map_total: int
    reduce_done: int
    reduce_total: int
    elapsed: float | None
    workers: tuple[WorkerRow, ...]
    containers: tuple[tuple[str, str], ...]  # (short name, docker status)
    note: str | None = None
    step: str = ""  # a multi-step job's running step, e.g. "step 3/12 (iterate, iteration 2/10)"
    warm: bool = False  # started by `mrctl up`: runs jobs in turn, idle between them
    history: tuple[WarmJob, ...] = ()  # a warm cluster's recent jobs, newest first


def clusters(host: DockerHost, scope: dict[str, str] | None = None) -> dict[str, list[ContainerInfo]]:
    """Cluster id -> its containers (networks without containers count as clusters too);
    with `scope`, only the clusters whose objects carry those labels too."""
    found: dict[str, list[ContainerInfo]] = {}
    only = {**(scope or {}), LABEL_CLUSTER: ""}
    for c in host.containers(only):
        found.setdefault(c.labels[LABEL_CLUSTER], []).append(c)
    for _, labels in host.networks(only):
        found.setdefault(labels[LABEL_CLUSTER], [])
    for _, labels in dockerswarm.services(host, only):  # a swarm cluster's
        found.setdefault(labels[LABEL_CLUSTER], [])
    return found


def resolve(host: DockerHost, job: str | None) -> tuple[str, list[ContainerInfo]]:
    """The one cluster meant: `job` may be a cluster id, a job id or a job name."""
    every = clusters(host)
    matches = _docker_matches(every, job) if job is not None else every
    if not matches:
        raise SpecError(f"no mrctl cluster matches --job {job}" if job else "no mrctl cluster is running")
    if len(matches) > 1:
        names = ", ".join(f"{cid} ({_job_name(cs)})" for cid, cs in sorted(matches.items()))
        raise SpecError(f"several clusters are running: {names}; pick one with --job")
    return next(iter(matches.items()))


def _docker_matches(every: dict[str, list[ContainerInfo]], job: str) -> dict[str, list[ContainerInfo]]:
    return {cid: cs for cid, cs in every.items()
            if job == cid or any(job in (c.labels.get(LABEL_JOB), c.labels.get(LABEL_JOB_ID))
                                 for c in cs)}


def _job_name(containers: list[ContainerInfo]) -> str:
    return next((c.labels.get(LABEL_JOB, "?") for c in containers), "?")


def status(host: DockerHost) -> list[ClusterStatus]:
    return [_status_of(cid, cs) for cid, cs in sorted(clusters(host).items())]


def published_redis(containers: list[ContainerInfo]) -> ContainerInfo | None:
    """The running container that publishes a cluster's Redis port to the host: Redis's own,
    or a swarm cluster's forwarder; None when there is none (a leftover cluster)."""
    return next((c for c in containers if c.labels.get(LABEL_ROLE) in ("redis", "forward")
                 and REDIS_PORT in c.host_ports and c.status == "running"), None)


def _status_of(cid: str, containers: list[ContainerInfo]) -> ClusterStatus:
    redis = published_redis(containers)
    base = dict(cluster=cid, job_name=_job_name(containers),
                job_id=next((c.labels.get(LABEL_JOB_ID, "") for c in containers), ""),
                containers=tuple((display_name(c, cid), c.status) for c in containers),
                warm=is_warm(containers))
    if redis is None:
        return ClusterStatus(**base, phase="unknown", state="unknown", map_done=0, map_total=0,
                             reduce_done=0, reduce_total=0, elapsed=None, workers=(),
                             note="Redis is not running: this cluster is a leftover (mrctl down)")
    url = redis_url(redis)
    if url is None:
        return ClusterStatus(**base, phase="unknown", state="unknown", map_done=0, map_total=0,
                             reduce_done=0, reduce_total=0, elapsed=None, workers=(),
                             note=f"no password for this cluster in {credentials.cluster_file(cid)} "
                                  "(started by another user?)")
    broker = Broker(url, retries=0)
    try:
        return _read_warm(broker, base) if base["warm"] else _read_progress(broker, base)
    except InfraError as exc:
        return ClusterStatus(**base, phase="unknown", state="unknown", map_done=0, map_total=0,
                             reduce_done=0, reduce_total=0, elapsed=None, workers=(), note=str(exc))
    finally:
        broker.close()


def _read_warm(broker: Broker, base: dict) -> ClusterStatus:
    """A warm cluster: the job holding its lock (as any cluster's progress), or idle; and the
    jobs it ran."""
    history = tuple(WarmJob(**entry) for entry in broker.runs())
    holder = broker.cluster_holder()
    if holder is None:
        return ClusterStatus(**{**base, "job_name": "", "job_id": ""}, phase="idle", state="idle",
                             map_done=0, map_total=0, reduce_done=0, reduce_total=0, elapsed=None,
                             workers=_worker_rows(broker), history=history)
    held = json.loads(holder)
    running = _read_progress(broker, {**base, "job_name": held["name"], "job_id": held["job"]})
    return dataclasses.replace(running, history=history)


def _worker_rows(broker: Broker) -> tuple[WorkerRow, ...]:
    info, beats, now = broker.worker_rows()
    return tuple(
        WorkerRow(name, w.get("state", "?"), w.get("task"), w.get("attempt"), w.get("tasks_done", 0),
                  (now - beats[name]) / 1000 if name in beats else None)
        for name, w in sorted(info.items()))


def _read_progress(broker: Broker, base: dict) -> ClusterStatus:
    job = broker.current_job()
    meta = (broker.meta(job) if job else None) or JobMeta()
    stats = broker.stats(job) if job else {}
    workers = _worker_rows(broker)
    step = ""
    if meta.steps > 1:
        step = step_label(meta.step, meta.steps, meta.step_name, meta.iteration, meta.iterations)
    return ClusterStatus(
        **{**base, "job_id": meta.run or job or base["job_id"]}, step=step, phase=meta.phase,
        state=meta.state, map_done=stats.get("maps_done", 0),
        map_total=meta.map_tasks, reduce_done=stats.get("reduces_done", 0),
        reduce_total=meta.reducers, workers=workers,
        elapsed=time.time() - meta.created if meta.created else None,
    )


def logs(host: DockerHost, name: str, job: str | None, tail: int | str = "all",
         follow: bool = False) -> Iterator[bytes]:
    """The log stream of `worker-2` or `redis` in the cluster meant by `job`."""
    cid, containers = resolve(host, job)
    if any(c.labels.get(LABEL_BACKEND) == "swarm" for c in containers):
        return swarm_logs(host, cid, name, tail, follow)
    names = sorted(short_name(c.name, cid) for c in containers)
    if name not in names:
        raise SpecError(f"no container {name!r} in cluster {cid}; there are: {', '.join(names)}")
    return host.logs(f"mrctl-{cid}-{name}", tail=tail, follow=follow)


@dataclass(frozen=True)
class Left:
    """A cluster whose master may still run: `down` leaves it, or with --force removes it."""

    cluster: str
    job: str
    master: str  # "pid 4242", or "pid 4242 on host other"
    unchecked: bool = False  # its master is on another host, so counts as running


@dataclass(frozen=True)
class DownResult:
    """What `mrctl down` removed, and what it left."""

    docker: list[tuple[str, int]]  # (cluster, containers removed)
    local: list[Cleanup]  # leftovers of local clusters whose master died
    docker_unreachable: str | None = None  # why Docker clusters were not looked at
    warm_kept: tuple[str, ...] = ()  # warm clusters left running (only --cluster or --job removes one)
    spill: tuple[Stray, ...] = ()  # spill directories of masters that died
    left: tuple[Left, ...] = ()  # clusters whose master still runs, left alone
    forced: tuple[Left, ...] = ()  # clusters whose master still runs, removed by --force


def down(job: str | None, everything: bool, cluster: str | None = None,
         docker_host: str | None = None, force: bool = False) -> DownResult:
    """Remove one cluster, or every one with `everything`, among those whose master is gone
    (dead, its pid reused, or another boot) or was left on purpose (--keep): Docker clusters
    (containers and network, by label) and local clusters (processes still running, temp dir,
    record); and every stray spill directory (mrctl.backends.spill_dirs) whichever is chosen. A cluster
    whose master still runs, or runs on another host (it cannot be checked from here), is left
    and listed, unless `force`. `job` is a cluster id, job id or job name; without it, the only
    removable cluster there is; warm clusters are removed only when named (`cluster`, or
    `job`). With MRCTL_LABELS set, only the Docker clusters carrying those labels are looked
    at. Without a Docker engine, local leftovers are still cleaned and the result says why
    Docker clusters were not looked at. `docker_host`: the engine (None: DOCKER_HOST, else
    the local one)."""
    if cluster is not None:
        return _down_warm(cluster, job, everything, docker_host)
    spill = tuple(spill_dirs.remove_strays())  # whichever cluster is chosen: their runs are over
    local = local_registry.records()
    try:
        host: DockerHost | None = DockerHost(base_url=docker_host)
        unreachable = None
    except InfraError as exc:
        if job is not None and not _local_matches(local, job):
            raise
        host, unreachable = None, str(exc)
    try:
        every = clusters(host, extra_labels(os.environ.get("MRCTL_LABELS", ""))) if host else {}
        kept = left_warm(every, job, everything)
        docker = {c: cs for c, cs in every.items() if c not in kept}
        if job is not None:
            docker, local = _docker_matches(docker, job), _local_matches(local, job)
            if not docker and not local:
                raise SpecError(f"no mrctl cluster matches --job {job}")
        live = _live(host, docker, local) if host else _live_local(local)
        alive = {x.cluster for x in live}
        docker_ids, chosen = _choose({c: cs for c, cs in docker.items() if force or c not in alive},
                                     [r for r in local if force or r.cluster not in alive], None, everything)
        removed = [(cid, remove_cluster(host, cid)) for cid in docker_ids] if host else []
    finally:
        if host is not None:
            host.close()
    forced = tuple(x for x in live if force and x.cluster in {*docker_ids, *(r.cluster for r in chosen)})
    return DownResult(removed, [local_registry.clean(r) for r in chosen], unreachable, kept, spill,
                      () if force else tuple(live), forced)


def _live(host: DockerHost, docker: dict[str, list[ContainerInfo]], local: list[LocalRecord]) -> list[Left]:
    """The clusters among these whose master may still run: a Docker cluster's as its labels
    name it (not one left by --keep), a local one's as its record does."""
    kept = set(host.volumes({LABEL_ROLE: KEPT_ROLE}))
    found = []
    for cid, containers in sorted(docker.items()):
        master = None if is_warm(containers) else _master(host, cid, containers)  # warm: named, so meant
        if master is None or kept_volume(cid) in kept or (state := master.state()) == GONE:
            continue
        found.append(Left(cid, _job_name(containers), master.where(), state == ELSEWHERE))
    return found + _live_local(local)


def _live_local(local: list[LocalRecord]) -> list[Left]:
    return [Left(r.cluster, r.job, f"pid {r.master.pid}") for r in local if r.master_running()]


def _master(host: DockerHost, cid: str, containers: list[ContainerInfo]) -> Master | None:
    """The master a cluster's labels name (its network's, when it has no container yet)."""
    labelled = [c.labels for c in containers] or [labels for _, labels in host.networks({LABEL_CLUSTER: cid})]
    return next((m for labels in labelled if (m := Master.from_labels(labels))), None)


def left_warm(docker: dict[str, list[ContainerInfo]], job: str | None, everything: bool) -> tuple[str, ...]:
    """The warm clusters `mrctl down` leaves running, --all too: only --cluster or --job
    names one for removal."""
    if job is not None:
        return ()
    return tuple(sorted(cid for cid, cs in docker.items() if is_warm(cs)))


def _down_warm(name: str, job: str | None, everything: bool, docker_host: str | None) -> DownResult:
    """`mrctl down --cluster NAME`: remove that warm cluster, and nothing else."""
    if job is not None or everything:
        raise SpecError("--cluster names one warm cluster: give it without --job or --all")
    with DockerHost(base_url=docker_host) as host:
        found = clusters(host).get(name)
        # a start killed before its first container leaves the networks only
        if not (found and is_warm(found)) and not host.networks({WARM_LABEL: name}):
            warm = sorted(c for c, cs in clusters(host).items() if is_warm(cs))
            raise SpecError(f"no warm cluster named {name}; warm clusters: {', '.join(warm) or 'none'}")
        return DownResult([(name, remove_cluster(host, name))], [])


def _local_matches(local: list[LocalRecord], job: str) -> list[LocalRecord]:
    return [r for r in local if job in (r.cluster, r.job, r.job_id)]


def _choose(docker: dict[str, list[ContainerInfo]], local: list[LocalRecord], job: str | None,
            everything: bool) -> tuple[list[str], list[LocalRecord]]:
    """The Docker cluster ids and local leftovers `down` should remove."""
    if everything:
        return sorted(docker), local
    if job is not None:
        docker, local = _docker_matches(docker, job), _local_matches(local, job)
    names = [f"{cid} ({_job_name(cs)})" for cid, cs in sorted(docker.items())]
    names += [f"{r.cluster} ({r.job}, local)" for r in local]
    if job is not None and not names:
        raise SpecError(f"no mrctl cluster matches --job {job}")
    if len(names) > 1:
        raise SpecError(f"several clusters: {', '.join(names)}; pick one with --job, or use --all")
    return sorted(docker), local


def format_down(result: DownResult) -> str:
    """Plain text for `mrctl down`: a pure function of what was removed and left."""
    out = [f"warning: removing cluster {x.cluster} (job {x.job}) although its master ({x.master}) "
           f"{'may still run: it is on another host' if x.unchecked else 'is still running'} (--force)"
           for x in result.forced]
    out += [f"removed cluster {cid}: {count} containers and its network" for cid, count in result.docker]
    for c in result.local:
        what = (f"killed {len(c.killed)} leftover process{'es' if len(c.killed) != 1 else ''} "
                f"({', '.join(c.killed)})" if c.killed else "no leftover process")
        if c.survivors:
            out.append(f"local cluster {c.record.cluster} (job {c.record.job}): {what}, but "
                       f"{', '.join(c.survivors)} would not die; run mrctl down again")
            continue
        deleted = f", deleted {c.deleted}" if c.deleted else ""
        out.append(f"removed local cluster {c.record.cluster} (job {c.record.job}): {what}{deleted}")
    out += [f"removed {spill_dirs.describe(stray)}" for stray in result.spill]
    if not out:
        out.append("nothing to remove")
    out += [_left_line(x) for x in result.left]
    out += [f"warm cluster {name} left running (mrctl down --cluster {name})" for name in result.warm_kept]
    if result.docker_unreachable:
        out.append(f"the Docker engine was not reachable, so Docker clusters were not looked at: "
                   f"{result.docker_unreachable}")
    return "\n".join(out)


def _left_line(x: Left) -> str:
    why = ("cannot be checked from this host, so it counts as still running" if x.unchecked
           else "still running")
    return (f"left cluster {x.cluster} (job {x.job}): master {x.master} {why} "
            f"(mrctl down --force --job {x.cluster} removes it)")


def format_status(statuses: list[ClusterStatus]) -> str:
    """Plain text for `mrctl status`: a pure function of the statuses."""
    if not statuses:
        return "No mrctl cluster is running."
    out = []
    for s in statuses:
        elapsed = f", {s.elapsed:.0f}s" if s.elapsed is not None else ""
        phase = f"{s.step}: {s.phase}" if s.step else f"phase {s.phase}"
        job = f"job {s.job_name} ({s.job_id})  {phase}  state {s.state}{elapsed}"
        if s.warm:
            workers = sum(n.startswith("worker-") and st == "running" for n, st in s.containers)
            busy = "idle" if s.state == "idle" else job
            out.append(f"cluster {s.cluster}  warm, {workers} worker{'s' if workers != 1 else ''}  {busy}")
        else:
            out.append(f"cluster {s.cluster}  {job}")
        if s.state != "idle":
            out.append(f"  map {s.map_done}/{s.map_total}   reduce {s.reduce_done}/{s.reduce_total}")
        if s.note:
            out.append(f"  note: {s.note}")
        for w in s.workers:
            task = f"{w.task} (attempt {w.attempt})" if w.task else "-"
            age = f"{w.heartbeat_age:.1f}s ago" if w.heartbeat_age is not None else "never"
            out.append(f"  {w.name:<12} {w.state:<9} {task:<22} done {w.tasks_done:<4} heartbeat {age}")
        if s.history:
            out.append(f"  recent jobs ({len(s.history)}, newest first):")
        for r in s.history[:HISTORY_SHOWN]:
            when = time.strftime("%H:%M:%S", time.localtime(r.finished))
            out.append(f"    {when}  {r.name:<14} {r.job}  {r.state:<11} {r.elapsed:.2f}s")
        out.append("  containers: " + ", ".join(f"{n} ({st})" for n, st in s.containers))
    return "\n".join(out)
