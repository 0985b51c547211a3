"""Warm clusters: a Docker cluster started without a job (`mrctl up`) that runs jobs one after
another (`mrctl run --cluster NAME`) until `mrctl down --cluster NAME`.

A warm cluster is a DockerCluster whose id is its name, every object of it labelled
`mrctl.cluster-name` (with the worker count `up` gave it and the worker image it runs, so that
a run can replace a dead worker by one like it). A run attaches (`AttachedCluster`): it finds
the containers by label, the Redis password in this user's state file and Redis's loopback port
on its container; it starts nothing and removes nothing, and its master supervises the workers
as in any run (a dead one is replaced, chaos works).

One job at a time. The run takes the cluster's lock in Redis (SET NX with a TTL that a thread
of the master renews; a killed master's lock expires by itself), and a second run is refused
(`ClusterBusy`, exit 3) naming the job that holds it. A job's keys are all under its job id;
when it ends, however it ends, they are dropped (its steps' too), the job is added to the
cluster's history and the lock is released, so the next job finds the cluster as `up` left it.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from mrctl.backends import WorkerExit, credentials
from mrctl.backends.docker import ClusterShape, DockerCluster, redis_url, short_name
from mrctl.broker import Broker, keys
from mrctl.dockerapi.host import (
    LABEL_CLUSTER,
    LABEL_CREATED,
    LABEL_JOB,
    LABEL_JOB_ID,
    LABEL_ROLE,
    ContainerInfo,
    DockerHost,
)
from mrctl.errors import Cancelled, InfraError, Interrupted, SpecError
from mrctl.images.build import ClusterImages

log = logging.getLogger(__name__)

WARM_LABEL = "mrctl.cluster-name"  # on every object of a warm cluster: its name
SIZE_LABEL = "mrctl.cluster-workers"  # the worker count `mrctl up` gave it
IMAGE_LABEL = "mrctl.cluster-image"  # the worker image, for replacements
_OWN_LABELS = {LABEL_CLUSTER, LABEL_ROLE, LABEL_JOB, LABEL_CREATED, LABEL_JOB_ID,
               WARM_LABEL, SIZE_LABEL, IMAGE_LABEL}
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")
RENEW_EVERY_S = keys.LOCK_TTL_MS / 3000


class ClusterBusy(InfraError):
    """A warm cluster is running another job; one runs at a time."""


def is_warm(containers: list[ContainerInfo]) -> bool:
    return any(WARM_LABEL in c.labels for c in containers)


class WarmCluster(DockerCluster):
    """A cluster `mrctl up` starts: named, labelled warm, left running after its `with` block
    (removed if its start fails or is interrupted)."""

    def __init__(self, name: str, workers: int, redis_memory: str = "1gb", offline: bool | None = None,
                 docker_host: str | None = None) -> None:
        super().__init__(ClusterShape(name, workers), "", redis_memory, keep=True, offline=offline,
                         docker_host=docker_host)
        self.id = name

    def labels(self, role: str) -> dict[str, str]:
        return {**super().labels(role), WARM_LABEL: self.id, SIZE_LABEL: str(self.spec.workers),
                IMAGE_LABEL: self.images.worker if self.images else ""}

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.teardown()
        elif self.host is not None:
            self.host.close()


def up(name: str | None = None, workers: int = 2, redis_memory: str = "1gb",
       offline: bool | None = None, backend: str = "docker", docker_host: str | None = None) -> str:
    """Start a warm cluster (Redis and `workers` workers, each having sent a heartbeat) and
    leave it running, on the engine at `docker_host` (None: DOCKER_HOST, else the local one);
    returns its name."""
    if backend == "swarm":
        raise SpecError("mrctl up runs plain Docker clusters only: a warm cluster on a swarm is not "
                        "supported yet (run each job with --backend swarm)")
    if backend != "docker":
        raise SpecError(f"mrctl up runs Docker clusters only, not --backend {backend}: a local "
                        "cluster's redis-server and workers die with the process that started "
                        "them (on purpose, see the security model), so none can stay warm")
    if workers < 1:
        raise SpecError(f"--workers: expected an integer >= 1, got {workers}")
    name = name or f"warm-{secrets.token_hex(3)}"
    if not NAME.fullmatch(name):
        raise SpecError(f"--name {name!r}: expected lowercase letters, digits, '.', '_' or '-' "
                        "(at most 40, starting with a letter or digit)")
    with DockerHost(base_url=docker_host) as host:
        if host.containers({LABEL_CLUSTER: name}) or host.networks({LABEL_CLUSTER: name}):
            raise SpecError(f"a cluster named {name} exists already (mrctl status)")
    with WarmCluster(name, workers, redis_memory, offline, docker_host) as cluster:
        broker = Broker(cluster.redis_url)
        try:
            cluster.wait_ready(broker)
        finally:
            broker.close()
    log.info("warm cluster %s is up: redis + %d workers (mrctl run SPEC --cluster %s; "
             "mrctl down --cluster %s)", name, workers, name, name)
    return name


def _number(short: str) -> int:
    return int(short.rsplit("-", 1)[1])


def _outcome(exc_type: type[BaseException] | None) -> str:
    if exc_type is None:
        return "succeeded"
    if issubclass(exc_type, Cancelled):
        return "cancelled"
    return "interrupted" if issubclass(exc_type, Interrupted | KeyboardInterrupt) else "failed"


class AttachedCluster(WarmCluster):
    """One run's hold on a warm cluster, as a context manager: attach and lock on enter,
    supervise and replace workers like any cluster, and on exit drop the run's keys, record
    it and unlock. It never starts the cluster nor removes it."""

    def __init__(self, name: str, run: str, job_name: str, docker_host: str | None = None) -> None:
        super().__init__(name, 0, docker_host=docker_host)
        self.run, self.job_name = run, job_name
        self.holder = json.dumps({"job": run, "name": job_name})
        self.broker: Broker | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._lock_lost = False
        self._started = 0.0
        self._started_workers: list[str] = []

    def __enter__(self) -> AttachedCluster:
        self._started = time.monotonic()
        self.host = DockerHost(base_url=self.docker_host)
        try:
            workers = self._attach()
            self._take_lock()
            self._settle(workers)
        except BaseException:
            self._exit(None, ran=False)
            raise
        return self

    def _attach(self) -> list[ContainerInfo]:
        """Read the cluster from the engine: Redis's URL, how to start a worker like the
        others; returns the worker containers."""
        assert self.host
        containers = self.host.containers({LABEL_CLUSTER: self.id})
        if not is_warm(containers):
            raise SpecError(f"no warm cluster named {self.id}" + (
                " (a cluster with that id exists, but mrctl up did not start it)" if containers else "")
                + f"; start one with mrctl up --name {self.id}")
        redis = next((c for c in containers if c.labels.get(LABEL_ROLE) == "redis"), None)
        if redis is None or redis.status != "running":
            raise InfraError(f"warm cluster {self.id}: Redis is not running; remove the cluster "
                             f"(mrctl down --cluster {self.id}) and start another (mrctl up)")
        url = redis_url(redis)
        if url is None:
            raise InfraError(f"warm cluster {self.id}: no Redis password in "
                             f"{credentials.cluster_file(self.id)} (started by another user?)")
        self.redis_url, self.password = url, credentials.redis_password(self.id) or ""
        self.spec = ClusterShape(self.id, int(redis.labels.get(SIZE_LABEL, "1")))
        self.images = ClusterImages(redis.labels.get(IMAGE_LABEL, ""), "", [], False)
        workers = [c for c in containers if c.labels.get(LABEL_ROLE) == "worker"]
        self._next = 1 + max((_number(short_name(c.name, self.id)) for c in workers), default=0)
        return workers

    def _take_lock(self) -> None:
        self.broker = Broker(self.redis_url)
        held = self.broker.acquire_cluster(self.holder)
        if held is not None:
            try:
                job = json.loads(held)
                who = f"job {job['name']} ({job['job']})"
            except (ValueError, KeyError, TypeError):
                who = held
            raise ClusterBusy(f"warm cluster {self.id} is running {who}; one job runs at a time: "
                              f"wait for it, or start another cluster (mrctl up). A killed run's "
                              f"lock expires within {keys.LOCK_TTL_MS / 1000:g}s")
        self._renewer = threading.Thread(target=self._renew, name=f"lock-{self.id}", daemon=True)
        self._renewer.start()

    def _settle(self, workers: list[ContainerInfo]) -> None:
        """Holding the lock, bring the cluster back to what `up` made: remove the containers
        of workers replaced in earlier jobs and a killed run's keys; a worker that died since
        the last job is left for the first supervise() to report, so that the runner replaces
        it (with an event); start workers whose containers were removed."""
        assert self.host and self.broker
        rows, _, _ = self.broker.worker_rows()
        alive = [c for c in workers if c.status not in ("exited", "dead")]
        dead = [c for c in workers if c not in alive
                and rows.get(short_name(c.name, self.id), {}).get("state") != "replaced"]
        dead = dead[:max(0, self.spec.workers - len(alive))]  # the cluster's size, no more
        replaced = [c for c in workers if c not in alive and c not in dead]
        self.states = {short_name(c.name, self.id): "starting" for c in alive + dead}
        if replaced:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(self.host.remove_container, [c.id for c in replaced]))
            self.broker.forget_workers([short_name(c.name, self.id) for c in replaced])
        if dropped := self.broker.drop_stale_jobs():
            log.info("warm cluster %s: removed %d keys left by earlier jobs", self.id, dropped)
        self._started_workers = [self._start_worker() for _ in range(self.spec.workers - len(alive) - len(dead))]
        log.info("job %s on warm cluster %s: %d workers", self.run, self.id, len(alive))

    def _renew(self) -> None:
        assert self.broker
        while not self._stop.wait(RENEW_EVERY_S):
            try:
                if not self.broker.renew_cluster(self.holder):
                    self._lock_lost = True
                    return
            except InfraError as exc:  # the master meets the same trouble and reports it
                log.debug("renewing the lock of %s: %s", self.id, exc)

    def supervise(self) -> list[WorkerExit]:
        if self._lock_lost:
            raise InfraError(f"the lock of warm cluster {self.id} expired while job {self.run} ran "
                             "(the master stalled?): another job may have started, so this one stops")
        return super().supervise()

    def replace(self, name: str) -> str:
        assert self.broker
        self.broker.mark_replaced(name)
        return super().replace(name)

    def _start_worker(self) -> str:
        """A worker like those `up` started: its labels (MRCTL_LABELS as `up` had them, read
        from a network, since a container's labels also hold its image's) and limits."""
        assert self.host
        if self._memory_total == 0:  # first start of this run: read what `up` knew
            networks = self.host.networks({LABEL_CLUSTER: self.id})
            labels = networks[0][1] if networks else {}
            self.extra_labels = {k: v for k, v in labels.items() if k not in _OWN_LABELS}
            self._memory_total = self.host.memory_total()
        return super()._start_worker()

    def wait_ready(self, broker: Broker, timeout: float = 60.0) -> None:
        """Only workers started by this run have yet to send a first heartbeat."""
        if self._started_workers:
            super().wait_ready(broker, timeout)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._exit(exc_type, ran=True)

    def _exit(self, exc_type: type[BaseException] | None, ran: bool) -> None:
        """If locked: drop the run's keys, record it (if it ran) and unlock; then disconnect.
        The cluster itself stays. Trouble here is logged, not raised: the job's own outcome is
        what the caller must see, and leftovers go at the next attach or with the lock's TTL."""
        self._stop.set()
        try:
            if self._renewer is not None and self.broker is not None:
                self._renewer.join()
                self.broker.drop_run(self.run)
                if ran:
                    self.broker.record_run({"job": self.run, "name": self.job_name, "state": _outcome(exc_type),
                                            "elapsed": round(time.monotonic() - self._started, 3),
                                            "finished": round(time.time(), 3)})
                self.broker.release_cluster(self.holder, self.run)
        except InfraError as exc:
            log.warning("cleaning up after job %s on warm cluster %s: %s", self.run, self.id, exc)
        finally:
            if self.broker is not None:
                self.broker.close()
            if self.host is not None:
                self.host.close()
