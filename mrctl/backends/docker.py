"""The docker backend: two networks, a Redis container and N worker containers.

`DockerCluster` is the owner of all of them: a context manager whose __enter__ undoes a
half-finished start and whose __exit__ removes every container and network (unless `keep`),
found by the cluster's label, and the cluster's state file (mrctl.backends.credentials).

Containment: workers run job code, so they sit on an `internal` network only, with no route
out of it — not to the internet, and, as the bridge has no address of the host
(inhibit_ipv4), not to the host's own services either. Redis is on that network too, and on
a second bridge that exists only to publish its port on the host's 127.0.0.1, which is how
the master (in the calling process) reaches it; an internal network cannot publish ports.
That bridge does not masquerade, so Redis has no working route to the internet either.

The Redis password is in no command line, environment or label: each container gets its
secret as a 0400 file copied in before it starts (redis.conf for Redis, the Redis URL for
workers, in /run/mrctl), and `mrctl status` finds it in the user's 0600 state file.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import secrets
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mrctl.backends import WorkerExit, credentials, passed_environment, subnets
from mrctl.backends.master_id import KEPT_ROLE, Master, kept_volume
from mrctl.backends.redis_config import container_memory_limit, redis_conf
from mrctl.broker import Broker
from mrctl.dockerapi.host import (
    LABEL_CLUSTER,
    LABEL_CREATED,
    LABEL_JOB,
    LABEL_JOB_ID,
    LABEL_ROLE,
    ContainerInfo,
    DockerHost,
    FileToCopy,
    SubnetTaken,
)
from mrctl.errors import InfraError, SpecError
from mrctl.images.build import ClusterImages, ensure_images
from mrctl.spec.jobspec import JobSpec, WorkerLimits
from mrctl.spec.placement import Placement

log = logging.getLogger(__name__)

REDIS_PORT = "6379/tcp"
SUPERVISE_EVERY_S = 0.5
SECRETS_DIR = "/run/mrctl"  # where each container finds its secret file
REDIS_UID = 65534  # nobody: redis-server needs no account of its own
WORKER_UID = 10001  # the USER of Dockerfile.worker
REDIS_PIDS_LIMIT = 64  # redis-server runs a handful of threads
WORKER_PIDS_LIMIT = 512  # default; the spec's `pids` overrides it
WORKER_MEMORY_SHARE = 0.75  # default: workers share 3/4 of the engine's memory ...
WORKER_MEMORY_FLOOR = 256 * 2**20  # ... but get at least 256 MiB each; the spec's `memory` overrides
NETWORK_ROUNDS = 100  # removals of a cluster's networks until none is listed (~20 s)


def redis_name(cluster: str) -> str:
    return f"mrctl-{cluster}-redis"


def worker_name(cluster: str, n: int) -> str:
    return f"mrctl-{cluster}-worker-{n}"


def network_name(cluster: str) -> str:
    """The cluster's internal network: workers and Redis, no route out."""
    return f"mrctl-{cluster}"


def publish_network_name(cluster: str) -> str:
    """The bridge that only Redis joins, to publish its port on the host's loopback."""
    return f"mrctl-{cluster}-publish"


def extra_labels(text: str) -> dict[str, str]:
    """`MRCTL_LABELS` (`key=value[,key=value...]`): labels added to every object of a cluster,
    e.g. to tell a CI run's or a test session's clusters from a user's."""
    labels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key or key.startswith("mrctl.cluster"):
            raise SpecError(f"MRCTL_LABELS: {item!r}: expected key=value[,key=value...] "
                            "(and not mrctl's own keys)")
        labels[key] = value
    return labels


def redis_url(redis: ContainerInfo) -> str | None:
    """The URL of a cluster's Redis from the host (its loopback port, the password from this
    user's state file); None when either is missing."""
    password = credentials.redis_password(redis.labels.get(LABEL_CLUSTER, ""))
    port = redis.host_ports.get(REDIS_PORT)
    if password is None or port is None:
        return None
    address = redis.host_ips.get(REDIS_PORT, "127.0.0.1")  # a remote engine's address, or loopback
    return f"redis://:{password}@{'127.0.0.1' if address in ('0.0.0.0', '') else address}:{port}/0"


@dataclass(frozen=True)
class ClusterShape:
    """What a cluster is made of when no job gives it (`mrctl up`): a JobSpec has these too."""

    name: str
    workers: int
    limits: WorkerLimits = WorkerLimits()
    placement: Placement = Placement()


def short_name(container_name: str, cluster: str) -> str:
    """`mrctl-<cluster>-worker-2` -> `worker-2` (the name users type and workers report)."""
    return container_name.removeprefix(f"mrctl-{cluster}-")


class EngineCluster:
    """What a cluster on a Docker engine (containers, or swarm services) starts with: its id,
    the job it serves, its Redis password, and the labels that are its objects' identity."""

    BACKEND_LABELS: dict[str, str] = {}

    def __init__(self, spec: JobSpec | ClusterShape, job_id: str, redis_memory: str = "1gb",
                 keep: bool = False, offline: bool | None = None, docker_host: str | None = None) -> None:
        self.spec = spec
        self.docker_host = docker_host
        self.id = secrets.token_hex(4)
        self.job_id = job_id
        self.redis_memory = redis_memory
        self.keep = keep
        self.offline = offline
        self.password = secrets.token_hex(16)
        self.redis_url = ""
        self.states: dict[str, str] = {}
        self._last_check = 0.0
        self.host: DockerHost | None = None
        self.images: ClusterImages | None = None
        self.extra_labels = extra_labels(os.environ.get("MRCTL_LABELS", ""))
        self.master = Master.this()  # this process: `mrctl down` leaves the cluster while it runs

    def labels(self, role: str) -> dict[str, str]:
        master = self.master.labels() if self.master else {}
        return {**self.extra_labels, LABEL_CLUSTER: self.id, LABEL_ROLE: role, LABEL_JOB: self.spec.name,
                LABEL_JOB_ID: self.job_id, **self.BACKEND_LABELS, LABEL_CREATED: str(int(time.time())),
                **master}

    def mark_kept(self) -> None:
        """Record that the cluster is left on purpose (--keep) as its master exits normally, so
        that `mrctl down` removes it even where that master cannot be checked (another host)."""
        assert self.host
        try:
            self.host.create_volume(kept_volume(self.id), self.labels(KEPT_ROLE))
        except InfraError as exc:
            log.warning("could not mark cluster %s as kept (%s): mrctl down --force --job %s removes it",
                        self.id, exc, self.id)


class DockerCluster(EngineCluster):
    """Owns one cluster's network and containers for the length of a `with` block."""

    def __init__(self, spec: JobSpec | ClusterShape, job_id: str, redis_memory: str = "1gb",
                 keep: bool = False, offline: bool | None = None, docker_host: str | None = None) -> None:
        super().__init__(spec, job_id, redis_memory, keep, offline, docker_host)
        self._next = 1
        self._lock = threading.Lock()
        self._memory_total = 0  # the engine's, read at start when a worker default needs it

    # -- start ----------------------------------------------------------------------------

    def __enter__(self) -> DockerCluster:
        self.host = DockerHost(base_url=self.docker_host)
        try:
            self.images = ensure_images(self.host, lambda msg: log.info("%s", msg), self.offline)
            log.info("starting cluster %s: redis + %d workers", self.id, self.spec.workers)
            credentials.save(self.id, self.job_id, self.password)
            if not self.spec.limits.memory:
                self._memory_total = self.host.memory_total()
            self._create_networks()
            self._start_redis()
            # Workers start in parallel while Redis warms up: they retry until it answers.
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda _: self._start_worker(), range(self.spec.workers)))
            self._wait_redis()
        except BaseException:
            self.teardown()
            raise
        return self

    def _create_networks(self) -> None:
        assert self.host
        self._create_internal_network()
        self.host.create_network(publish_network_name(self.id), self.labels("network"),
                                 options={"com.docker.network.bridge.enable_ip_masquerade": "false"})

    def _create_internal_network(self) -> None:
        """The workers' network. inhibit_ipv4: the host gets no address on the bridge, and the
        subnet holds none of the host's addresses (see `mrctl.backends.subnets`), so a worker cannot
        reach the host's services (an internal network alone only stops forwarding)."""
        assert self.host
        avoid = [ipaddress.ip_network(s) for s in self.host.network_subnets()]
        if self.host.publish_address() == "127.0.0.1":  # the engine runs here
            avoid += subnets.local_networks()
        for subnet in itertools.islice(subnets.candidates(avoid, start=zlib.crc32(self.id.encode())), 32):
            try:
                self.host.create_network(network_name(self.id), self.labels("network"), internal=True,
                                         options={"com.docker.network.bridge.inhibit_ipv4": "true"},
                                         subnet=str(subnet))
                return
            except SubnetTaken:  # another cluster took it since the listing: try the next
                continue
        raise InfraError(f"no free /24 subnet in {subnets.POOL} for the workers' network "
                         "(remove unused Docker networks: docker network prune)")

    def _start_redis(self) -> None:
        assert self.host and self.images
        conf = redis_conf(self.password, self.redis_memory, workdir="/tmp")
        address = self.host.publish_address()  # loopback, or a remote engine's address
        limits = {"pids_limit": REDIS_PIDS_LIMIT}
        if memory := container_memory_limit(self.redis_memory):
            limits["mem_limit"] = memory
        info = self.host.run_container(
            redis_name(self.id), self.images.redis,
            command=[*self.images.redis_command, f"{SECRETS_DIR}/redis.conf"],
            files=[FileToCopy("redis.conf", conf.encode(), REDIS_UID)], files_dir=SECRETS_DIR,
            # Published from the non-internal bridge; reached by the workers on the internal one.
            network=publish_network_name(self.id), networks=[network_name(self.id)],
            ports={REDIS_PORT: (address, None)}, labels=self.labels("redis"),
            user=f"{REDIS_UID}:{REDIS_UID}", cap_drop=["ALL"], security_opt=["no-new-privileges:true"],
            read_only=True, tmpfs={"/tmp": f"size=16m,uid={REDIS_UID},gid={REDIS_UID}"}, **limits,
        )
        port = info.host_ports.get(REDIS_PORT)
        if port is None:
            raise InfraError(f"Redis container {info.name} published no port:\n{self._logs(info.name)}")
        if address != "127.0.0.1":
            log.info("the engine is remote: Redis is published on %s:%d (password-protected)", address, port)
        self.redis_url = f"redis://:{self.password}@{address}:{port}/0"

    def _wait_redis(self, timeout: float = 20.0) -> None:
        broker = Broker(self.redis_url, retries=0)
        deadline = time.monotonic() + timeout
        try:
            while not broker.ping():
                info = self.host.container(redis_name(self.id))
                if info is None or info.status in ("exited", "dead"):
                    raise InfraError(f"the Redis container stopped during start-up:\n"
                                     f"{self._logs(redis_name(self.id))}")
                if time.monotonic() > deadline:
                    raise InfraError(f"Redis did not answer PING within {timeout:g}s:\n"
                                     f"{self._logs(redis_name(self.id))}")
                time.sleep(0.05)
        finally:
            broker.close()

    def _start_worker(self) -> str:
        assert self.host and self.images
        with self._lock:
            n, self._next = self._next, self._next + 1
        short, name = f"worker-{n}", worker_name(self.id, n)
        url = f"redis://:{self.password}@{redis_name(self.id)}:6379/0"
        self.host.run_container(
            name, self.images.worker, labels=self.labels("worker"), network=network_name(self.id),
            files=[FileToCopy("redis-url", url.encode(), WORKER_UID)], files_dir=SECRETS_DIR,
            environment={"MRCTL_REDIS_URL_FILE": f"{SECRETS_DIR}/redis-url", "MRCTL_WORKER_NAME": short,
                         **passed_environment()},
            user=f"{WORKER_UID}:{WORKER_UID}", cap_drop=["ALL"], security_opt=["no-new-privileges:true"],
            # /tmp may hold programs to run (a streaming job's files:): exec, where Docker's
            # default is noexec; nosuid and nodev stay. The job's own code runs anything anyway.
            init=True, read_only=True, tmpfs={"/tmp": "exec"}, **self._worker_limits(),
        )
        self.states[short] = "starting"
        return short

    def _worker_limits(self) -> dict:
        """docker-py options for a worker's limits: the spec's, else mrctl's defaults (a pids
        limit, and a share of the engine's memory) so that one runaway job cannot take the
        host down."""
        limits = self.spec.limits
        options: dict = {"pids_limit": limits.pids or WORKER_PIDS_LIMIT}
        if limits.cpus:
            options["nano_cpus"] = int(limits.cpus * 1e9)
        if limits.memory:
            options["mem_limit"] = limits.memory
        else:
            share = int(self._memory_total * WORKER_MEMORY_SHARE) // max(1, self.spec.workers)
            options["mem_limit"] = max(WORKER_MEMORY_FLOOR, share)
        return options

    def wait_ready(self, broker: Broker, timeout: float = 60.0) -> None:
        """Wait until every worker container has sent a heartbeat through Redis."""
        deadline = time.monotonic() + timeout
        while True:
            info, _, _ = broker.worker_rows()
            stopped = {short_name(c.name, self.id) for c in self._worker_containers()
                       if c.status in ("exited", "dead")}  # the runner replaces these
            live = [n for n in self.live_workers() if n not in stopped]
            if all(n in info for n in live):
                return
            if time.monotonic() > deadline:
                missing = [n for n in live if n not in info]
                raise InfraError(f"workers {', '.join(missing)} sent no heartbeat within {timeout:g}s:\n"
                                 f"{self._logs(worker_name(self.id, int(missing[0].rsplit('-', 1)[1])))}")
            time.sleep(0.1)

    # -- supervision ----------------------------------------------------------------------

    def _worker_containers(self) -> list:
        assert self.host
        return self.host.containers({LABEL_CLUSTER: self.id, LABEL_ROLE: "worker"})

    def live_workers(self) -> list[str]:
        return [n for n in self.states if self.states[n] not in ("dead", "replaced")]

    def supervise(self) -> list[WorkerExit]:
        """Worker containers that stopped since the last call (the runner decides on
        replacements)."""
        now = time.monotonic()
        if now - self._last_check < SUPERVISE_EVERY_S:
            return []
        self._last_check = now
        exits = []
        for c in self._worker_containers():
            short = short_name(c.name, self.id)
            if c.status not in ("exited", "dead") or self.states.get(short) in ("dead", "replaced"):
                continue
            reason = "was killed: out of memory" if c.oom_killed else f"exited with code {c.exit_code}"
            self.states[short] = "dead"
            exits.append(WorkerExit(short, reason, oom=c.oom_killed, log=self._logs(c.name, tail=30)))
        return exits

    def replace(self, name: str) -> str:
        """Start a worker container in place of dead `name`; returns the new one's name."""
        self.states[name] = "replaced"
        return self._start_worker()

    def kill_worker(self, name: str) -> None:
        """`docker kill` a worker container, as a crash would (chaos mode)."""
        assert self.host
        self.host.kill(worker_name(self.id, int(name.rsplit("-", 1)[1])))

    def _logs(self, name: str, tail: int = 40) -> str:
        try:
            assert self.host
            return b"".join(self.host.logs(name, tail=tail)).decode(errors="replace")
        except InfraError:
            return "(no logs)"

    # -- teardown -------------------------------------------------------------------------

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.keep and exc_type is None:
            log.info("cluster %s kept running (--keep): mrctl status, mrctl down --job %s",
                     self.id, self.id)
            self.mark_kept()
            self.host.close()
            return
        self.teardown()

    def teardown(self) -> None:
        """Remove every container, volume and network of this cluster (found by label) and
        its state file."""
        if self.host is None:
            return
        remove_cluster(self.host, self.id)
        self.host.close()


def remove_cluster(host: DockerHost, cluster: str) -> int:
    """Force-remove a cluster's containers (in parallel, with their volumes), any volume left
    with its label, its networks and its state file; returns how many containers."""
    remove_swarm_objects(host, cluster)  # first: Swarm would restart a task's removed container
    containers = host.containers({LABEL_CLUSTER: cluster})
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(host.remove_container, [c.id for c in containers]))
    for volume in host.volumes({LABEL_CLUSTER: cluster}):
        host.remove_volume(volume)
    # An overlay network may still be listed a moment after its removal (the node's agent
    # drops its copy after the manager's): removed again until the listing is empty.
    for again in range(NETWORK_ROUNDS):
        if again:
            time.sleep(0.2)
        networks = host.networks({LABEL_CLUSTER: cluster})
        if not networks:
            break
        for name, _ in networks:
            _remove_network(host, name)
    credentials.forget(cluster)
    return len(containers)


def remove_swarm_objects(host: DockerHost, cluster: str) -> int:
    """Remove a swarm cluster's services and secrets (nothing on an engine outside a swarm),
    and wait for the services' task containers to stop; returns how many services."""
    from mrctl.dockerapi import swarm as dockerswarm

    services = dockerswarm.services(host, {LABEL_CLUSTER: cluster})
    for name, _ in services:
        dockerswarm.remove_service(host, name)
    for secret in dockerswarm.secrets(host, {LABEL_CLUSTER: cluster}):
        dockerswarm.remove_secret(host, secret)
    return len(services)


def _remove_network(host: DockerHost, name: str, timeout_s: float = 20.0) -> None:
    """Remove a network, retrying while the engine still counts endpoints on it (an overlay's
    task containers leave it a moment after they are gone)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            host.remove_network(name)
            return
        except InfraError as exc:
            if "active endpoints" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
