"""Where runs are going on now, and how to reach their Redis (for the web page, mrctl.web):
the way `mrctl status` and `mrctl down` find clusters (mrctl.backends.fleet). Local clusters
from their records in the state directory (mrctl.backends.local_registry, which keep the Redis
URL), Docker clusters (warm ones too) from their labels, each Redis reached with the password
its starter saved (mrctl.backends.credentials).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mrctl.backends import fleet as clusters
from mrctl.backends import local_registry
from mrctl.backends.docker import redis_url
from mrctl.broker import Broker
from mrctl.dockerapi.host import LABEL_BACKEND, LABEL_CLUSTER, LABEL_JOB, LABEL_JOB_ID, DockerHost
from mrctl.errors import InfraError, MrctlError
from mrctl.observe.history import History

RUNNING_STATES = ("starting", "running")  # a cluster's job state (meta) while its run goes on


@dataclass(frozen=True)
class LiveRun:
    """A run going on now, as the page lists it and reaches it."""

    job_id: str
    name: str
    backend: str  # local | docker | warm
    cluster: str
    redis_url: str | None  # None: its Redis cannot be reached from here (no password, stopped)
    phase: str = ""


@dataclass(frozen=True)
class Found:
    """Everything going on: running jobs, Docker clusters, and why Docker was not looked at."""

    runs: tuple[LiveRun, ...] = ()
    clusters: tuple[clusters.ClusterStatus, ...] = ()
    docker_note: str | None = None


def discover() -> Found:
    """Running jobs (local and Docker) and every Docker cluster with its status."""
    runs = [LiveRun(r.job_id, r.job, "local", r.cluster, r.redis_url or None, _live_phase(r.redis_url, r.job_id))
            for r in local_registry.running()]
    try:
        with DockerHost(timeout=10) as host:
            statuses = clusters.status(host)
            urls = {cid: _redis_url(cs) for cid, cs in clusters.clusters(host).items()}
    except InfraError as exc:
        return Found(tuple(runs), (), str(exc))
    for s in statuses:
        if s.state in RUNNING_STATES and s.job_id:
            runs.append(LiveRun(s.job_id, s.job_name, "warm" if s.warm else "docker", s.cluster,
                                urls.get(s.cluster), s.phase))
    return Found(tuple(runs), tuple(statuses))


def recorded(job_id: str) -> tuple[str, int] | None:
    """(status, exit code) of the run if its record is in the history: it has ended."""
    try:
        with History() as h:
            run = h.get(job_id)
    except MrctlError:
        return None
    return (run.status, run.exit_code) if run.job_id == job_id else None


def find(job_id: str) -> LiveRun | None:
    """The running job `job_id`, or None when nothing runs it now. The cheap places first: a
    local record, then the containers labelled with the job's id (a cluster made for it; its
    Redis need not answer a progress read, which a loaded machine can time out); last every
    cluster's progress (a warm cluster's job is known only to its Redis)."""
    for record in local_registry.running():  # no Docker engine needed
        if record.job_id == job_id:
            return LiveRun(record.job_id, record.job, "local", record.cluster, record.redis_url or None)
    try:
        with DockerHost(timeout=10) as host:
            made_for = host.containers({LABEL_JOB_ID: job_id})
    except InfraError:
        made_for = []
    if made_for:
        first, url = made_for[0].labels, _redis_url(made_for)
        if url is not None and not _running(url):
            return None  # its job is over: the cluster is being torn down, or was kept
        return LiveRun(job_id, first.get(LABEL_JOB, ""), first.get(LABEL_BACKEND, "docker"),
                       first.get(LABEL_CLUSTER, ""), url)
    return next((r for r in discover().runs if r.job_id == job_id), None)


def _running(url: str) -> bool:
    """Whether the cluster's job is still starting or running (its meta's state); a Redis
    that does not answer in time counts as running: a command then waits for its master."""
    broker = Broker(url, retries=0, socket_timeout=10)
    try:
        job = broker.current_job()
        meta = broker.meta(job) if job else None
        return (meta.state if meta else "starting") in RUNNING_STATES
    except InfraError:
        return True
    finally:
        broker.close()


def find_cluster(cid: str) -> clusters.ClusterStatus | None:
    return next((c for c in discover().clusters if c.cluster == cid), None)


def _live_phase(url: str, job_id: str) -> str:
    """The phase of a local run's live snapshot ("" when its Redis cannot be read)."""
    if not url:
        return ""
    broker = Broker(url, retries=0, socket_timeout=2)
    try:
        live = broker.live(job_id)
    except InfraError:
        return ""
    finally:
        broker.close()
    return json.loads(live).get("phase", "") if live else "starting"


def _redis_url(containers: list) -> str | None:
    return redis_url(redis) if (redis := clusters.published_redis(containers)) else None
