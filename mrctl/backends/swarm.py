"""The swarm backend: Redis and the workers as Docker Swarm services on an overlay network.

`SwarmCluster` owns, for the length of a `with` block:
- an attachable, internal overlay network `mrctl-<cluster>` (no route out), and a bridge
  `mrctl-<cluster>-publish` that only publishes the forwarder's port;
- the Redis service `mrctl-<cluster>-redis` (1 replica, endpoint mode dnsrr: reached by name,
  no virtual IP), its redis.conf (with the password) a Swarm secret mounted 0400 for its user;
- the worker service `mrctl-<cluster>-worker` (N replicas, restart condition `any`: Swarm
  reschedules a dead worker's task), the Redis URL a second secret (MRCTL_REDIS_URL_FILE);
- the forwarder container `mrctl-<cluster>-forward` (a plain container, not a service, joined
  to the overlay and the publish bridge) that publishes 127.0.0.1:<random> -> redis:6379, by
  which the master, in the calling process, reaches Redis. Swarm's own publishing binds every
  interface (ingress or mode=host alike), and ingress and VIPs did not answer here; the
  forwarder keeps invariant 8 (loopback only). With a remote engine it publishes on the engine
  host's address instead, as the docker backend does (the password still guards it).

Worker names are `worker-<slot>.<first 5 of the container id>` (mrctl.backends.swarm_tasks): a
rescheduled task is a new worker in views and in the master's bookkeeping (its attempts, its
`tasks_done`, the crash-loop guard), not the dead one coming back.

Teardown removes services, the forwarder, the networks, the secrets and the state file, by
label, after success, failure, Ctrl-C and SIGTERM (remove_swarm_objects, also run by
`mrctl down` through mrctl.backends.docker.remove_cluster).

A lost node: its workers are reported lost with it (mrctl.backends.swarm_tasks). Losing Redis's
node loses the job's state: the run fails, naming the node (recorded once Redis answers). Losing
the manager loses the forwarder, the master's way to Redis, and the API: every call after the
start waits at most CALL_TIMEOUT_S, and teardown skips a manager that does not answer (the
swarm's objects were its own; the other nodes' workers stay until their engines are cleaned).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from mrctl.backends import WorkerExit, credentials, passed_environment
from mrctl.backends.docker import (
    REDIS_PIDS_LIMIT,
    REDIS_PORT,
    REDIS_UID,
    WORKER_MEMORY_FLOOR,
    WORKER_MEMORY_SHARE,
    WORKER_PIDS_LIMIT,
    WORKER_UID,
    ClusterShape,
    EngineCluster,
    network_name,
    publish_network_name,
    remove_cluster,
)
from mrctl.backends.redis_config import container_memory_limit, redis_conf
from mrctl.backends.swarm_tasks import (
    WORKER_COMMAND,
    WORKER_NAME,
    forward_name,
    given_up_on,
    lost_exit,
    lost_with_node,
    service_name,
    task_worker_name,
)
from mrctl.broker import Broker, RedisLost
from mrctl.dockerapi import swarm as dockerswarm
from mrctl.dockerapi.host import LABEL_BACKEND, DockerHost
from mrctl.dockerapi.swarm import NodeInfo, SecretFile, TaskInfo
from mrctl.errors import InfraError
from mrctl.images.build import ensure_images
from mrctl.images.registries import push_to_registry
from mrctl.spec.jobspec import JobSpec
from mrctl.spec.sizes import DOCKER_UNITS, size_in

log = logging.getLogger(__name__)
T = TypeVar("T")

SUPERVISE_EVERY_S = 0.5
NOT_STARTED = "starting container failed"  # a task's message when its container never ran
RESTART_DELAY_S = 1.0  # Swarm's default is 5 s; a lost worker is worth replacing sooner
CALL_TIMEOUT_S = 10.0  # the manager's API, once the cluster is up: a lost manager is an error, not a hang
TEARDOWN_TIMEOUT_S = 120  # once the manager has answered a ping: removals on a loaded machine take time
SECRETS_DIR = "/run/secrets"  # where Swarm mounts a service's secrets
class SwarmCluster(EngineCluster):
    """Owns one cluster's services, secrets, forwarder and networks for a `with` block."""

    BACKEND_LABELS = {LABEL_BACKEND: "swarm"}

    def __init__(self, spec: JobSpec | ClusterShape, job_id: str, redis_memory: str = "1gb",
                 keep: bool = False, offline: bool | None = None, docker_host: str | None = None,
                 registry: str | None = None, encrypted_overlay: bool = False) -> None:
        super().__init__(spec, job_id, redis_memory, keep, offline, docker_host)
        self.registry = registry  # where every node pulls the images from; None: each node has them
        self.encrypted_overlay = encrypted_overlay  # IPsec between nodes (Redis's AUTH is plain text)
        self._ended: set[str] = set()  # task ids already reported as exits
        self.redis_node: NodeInfo | None = None  # where Redis runs, once it answers

    # -- start ----------------------------------------------------------------------------

    def __enter__(self) -> SwarmCluster:
        self.host = DockerHost(base_url=self.docker_host)
        try:
            dockerswarm.require_manager(self.host)
            self.images = ensure_images(self.host, lambda msg: log.info("%s", msg), self.offline)
            if self.registry:
                self.images = push_to_registry(self.host, self.images, self.registry,
                                               lambda msg: log.info("%s", msg))
            log.info("starting cluster %s on swarm: redis + %d workers%s", self.id, self.spec.workers,
                     f" (placement: {self.spec.placement.describe()})" if self.spec.placement else "")
            credentials.save(self.id, self.job_id, self.password)
            self._create_networks()
            self._start_redis()
            self._start_workers()
            self._start_forwarder()
            self._wait_redis()
            self.redis_node = self._redis_node()
            self.host.bound_calls(CALL_TIMEOUT_S)
        except BaseException:
            self.teardown()
            raise
        return self

    def _create_networks(self) -> None:
        assert self.host
        dockerswarm.create_overlay(self.host, network_name(self.id), self.labels("network"), internal=True,
                                   encrypted=self.encrypted_overlay)
        self.host.create_network(publish_network_name(self.id), self.labels("network"),
                                 options={"com.docker.network.bridge.enable_ip_masquerade": "false"})

    def _start_redis(self) -> None:
        assert self.host and self.images
        conf = redis_conf(self.password, self.redis_memory, workdir="/tmp")
        limits = {"mem_limit": memory} if (memory := container_memory_limit(self.redis_memory)) else {}
        dockerswarm.create_service(
            self.host, service_name(self.id, "redis"), self.images.redis,
            command=[*self.images.redis_command, f"{SECRETS_DIR}/redis.conf"],
            labels=self.labels("redis"), networks=[network_name(self.id)],
            secret_files=[SecretFile(f"mrctl-{self.id}-redis-conf", conf.encode(), "redis.conf", REDIS_UID)],
            # A restarted Redis would be an empty one, which no job survives: a dead Redis stays
            # dead, and the master's next call fails the run clearly.
            replicas=1, endpoint_mode="dnsrr", restart="none", limits=limits, pids=REDIS_PIDS_LIMIT,
            tmpfs=["/tmp"],
            user=f"{REDIS_UID}:{REDIS_UID}", cap_drop=["ALL"], read_only=True,
        )

    def _start_workers(self) -> None:
        assert self.host and self.images
        url = f"redis://:{self.password}@{service_name(self.id, 'redis')}:6379/0"
        dockerswarm.create_service(
            self.host, service_name(self.id, "worker"), self.images.worker, command=WORKER_COMMAND,
            labels=self.labels("worker"), networks=[network_name(self.id)],
            secret_files=[SecretFile(f"mrctl-{self.id}-redis-url", url.encode(), "redis-url", WORKER_UID)],
            replicas=self.spec.workers, endpoint_mode="dnsrr", restart_delay_s=RESTART_DELAY_S,
            env={"MRCTL_REDIS_URL_FILE": f"{SECRETS_DIR}/redis-url", "MRCTL_SLOT": "{{.Task.Slot}}",
                 **passed_environment()},
            user=f"{WORKER_UID}:{WORKER_UID}", cap_drop=["ALL"], read_only=True, init=True,
            tmpfs=["/tmp"], **self._worker_limits(), **self._placement(),
        )

    def _worker_limits(self) -> dict:
        """Service Resources from the spec's limits, else mrctl's defaults (as the docker
        backend's). cpus -> Limits.NanoCPUs, memory -> Limits.MemoryBytes, pids ->
        Limits.Pids; Swarm has no no-new-privileges option for services on this API, so
        workers rely on their non-root user and dropped capabilities."""
        assert self.host
        limits = self.spec.limits
        resources: dict[str, int] = {}
        if limits.cpus:
            resources["cpu_limit"] = int(limits.cpus * 1e9)
        if limits.memory:
            resources["mem_limit"] = _bytes(limits.memory)
        else:
            share = int(self.host.memory_total() * WORKER_MEMORY_SHARE) // max(1, self.spec.workers)
            resources["mem_limit"] = max(WORKER_MEMORY_FLOOR, share)
        return {"limits": resources, "pids": limits.pids or WORKER_PIDS_LIMIT}

    def _placement(self) -> dict:
        """The spec's workers.placement (mrctl.spec.placement) as docker-py's service options."""
        placement, options = self.spec.placement, {}
        if placement.constraints:
            options["constraints"] = list(placement.constraints)
        if placement.spread:
            options["preferences"] = [("spread", label) for label in placement.spread]
        if placement.max_per_node:
            options["maxreplicas"] = placement.max_per_node
        return options

    def _start_forwarder(self) -> None:
        assert self.host and self.images
        address = self.host.publish_address()
        info = self.host.run_container(
            forward_name(self.id), self.images.worker, entrypoint=["python3", "-m", "mrctl.backends.forward"],
            command=[service_name(self.id, "redis"), "6379"], labels=self.labels("forward"),
            network=publish_network_name(self.id), networks=[network_name(self.id)],
            ports={REDIS_PORT: (address, None)}, user=f"{WORKER_UID}:{WORKER_UID}", cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"], init=True, read_only=True, pids_limit=64,
            mem_limit=128 * 2**20,
        )
        port = info.host_ports.get(REDIS_PORT)
        if port is None:
            raise InfraError(f"the forwarder {info.name} published no port:\n{self._logs_of_forwarder()}")
        if address != "127.0.0.1":
            log.info("the engine is remote: Redis is published on %s:%d (password-protected)", address, port)
        self.redis_url = f"redis://:{self.password}@{address}:{port}/0"

    def _wait_redis(self, timeout: float = 60.0, start_retries: int = 2) -> None:
        assert self.host
        broker = Broker(self.redis_url, retries=0)
        deadline = time.monotonic() + timeout
        retried: set[str] = set()  # failed tasks already replaced
        try:
            while not broker.ping():
                failed = [t for t in dockerswarm.tasks(self.host, service_name(self.id, "redis"))
                          if t.ended and t.id not in retried]
                if failed and len(retried) < start_retries and failed[-1].message.startswith(NOT_STARTED):
                    # The engine could not start the container (moby/moby#48783: "unable to remount
                    # [secrets] dir as readonly ... device or resource busy", now and then): no
                    # Redis ever ran, so nothing is lost by a new task, which restart="none" would
                    # never make by itself.
                    log.warning("the Redis task could not start (%s): starting another", failed[-1].message)
                    retried.update(t.id for t in failed)
                    dockerswarm.force_update(self.host, service_name(self.id, "redis"))
                    continue
                if failed or time.monotonic() > deadline:
                    what = f"the Redis task {failed[-1].state}: {failed[-1].message}" if failed else \
                        f"Redis did not answer PING within {timeout:g}s"
                    raise InfraError(f"{what}; its log:\n{self._service_logs('redis')}")
                time.sleep(0.1)
        finally:
            broker.close()

    def _redis_node(self) -> NodeInfo | None:
        """The node of the Redis task, as the manager lists it. Redis answering is no proof that
        the manager has heard its task run (the node's agent reports a moment later): its one
        task that has a node and has not ended is the one."""
        assert self.host
        placed = [t for t in dockerswarm.tasks(self.host, service_name(self.id, "redis")) if t.node_id and not t.ended]
        nodes = {n.id: n for n in dockerswarm.nodes(self.host)}
        return nodes.get(placed[-1].node_id) if placed else None

    def redis_whereabouts(self) -> str | None:
        """"Redis ran on swarm node node3 (172.18.0.4)", recorded when Redis first answered: what a
        failure to reach Redis names, even once that node (or the manager) is gone."""
        node = self.redis_node
        return f"Redis ran on swarm node {node.hostname} ({node.addr})" if node else None

    def wait_ready(self, broker: Broker, timeout: float = 60.0) -> None:
        """Wait until every running worker task has sent a heartbeat through Redis."""
        assert self.host
        deadline = time.monotonic() + timeout
        while True:
            info, _, _ = broker.worker_rows()
            tasks = self._manager_call(self._worker_tasks)
            running = [t for t in tasks if not t.ended]
            self._check_placed(running)
            self._check_images(tasks)
            live = [task_worker_name(t) for t in running if t.container_id]
            if len(live) >= self.spec.workers and all(n in info for n in live):
                return
            if time.monotonic() > deadline:
                missing = [n for n in live if n not in info] or ["(tasks not started)"]
                raise InfraError(f"workers {', '.join(missing)} sent no heartbeat within {timeout:g}s:\n"
                                 f"{self._service_logs('worker')}")
            time.sleep(0.2)

    def _check_placed(self, tasks: list[TaskInfo]) -> None:
        """Fail at once when Swarm says no node can take a worker task (its placement or the
        nodes' resources): waiting would not change the swarm, and the job would wait forever."""
        stuck = [t for t in tasks if t.state == "pending" and "no suitable node" in t.message]
        if stuck:
            placement = self.spec.placement
            hint = (f"the spec's workers.placement is {placement.describe()}: loosen it, or label nodes to "
                    "match (docker node update --label-add NAME=VALUE NODE)" if placement else
                    "the workers set no placement: see what the nodes lack (docker node inspect)")
            raise InfraError(f"Swarm cannot place {len(stuck)} of the {self.spec.workers} worker tasks: "
                             f"{stuck[0].message}; {hint}")

    def _check_images(self, tasks: list[TaskInfo]) -> None:
        """Fail at once when nodes reject worker tasks for want of the worker image. Without
        --registry every node must hold the images already (`mrctl images --push-to`): an image
        that only the manager has (built there by this run, or copied there alone) makes Swarm
        retry on the others until the heartbeat wait gives up, or pile every worker on the
        nodes that have it."""
        assert self.host and self.images
        rejected = [t for t in tasks if t.state == "rejected" and "no such image" in t.message.lower()]
        if not rejected:
            return
        names = {n.id: f"{n.hostname} ({n.addr})" for n in dockerswarm.nodes(self.host)}
        lacking = sorted({names.get(t.node_id, t.node_id) for t in rejected})
        raise InfraError(f"swarm node{'s' if len(lacking) > 1 else ''} {', '.join(lacking)} rejected worker tasks: "
                         f"{rejected[-1].message}. Without --registry, every node must hold the images: copy them "
                         f"with mrctl images --build --push-to tcp://NODE:2375 (once per node), or give --registry")

    # -- supervision ----------------------------------------------------------------------

    def _worker_tasks(self) -> list[TaskInfo]:
        assert self.host
        return dockerswarm.tasks(self.host, service_name(self.id, "worker"))

    def live_workers(self) -> list[str]:
        return [n for n in self.states if self.states[n] not in ("dead", "replaced")]

    def supervise(self) -> list[WorkerExit]:
        """Worker tasks that ended since the last call, each a WorkerExit with its reason;
        Swarm has already scheduled (or will) the task that takes its slot."""
        now = time.monotonic()
        if now - self._last_check < SUPERVISE_EVERY_S:
            return []
        self._last_check = now
        exits = []
        tasks = self._manager_call(self._worker_tasks)
        given_up = [t for t in tasks if given_up_on(t) and t.id not in self._ended]
        nodes = self._manager_call(lambda: dockerswarm.nodes(self.host)) if given_up else []
        lost_with = lost_with_node(given_up, nodes)
        for task in tasks:
            name = task_worker_name(task)
            node = lost_with.get(task.id)
            if not task.ended and node is None:
                if task.container_id:  # before that, the name is not the worker's yet
                    self.states.setdefault(name, "starting")
                continue
            if task.id in self._ended:
                continue
            self._ended.add(task.id)
            self.states[name] = "dead"
            exits.append(lost_exit(name, node) if node else self._exit_of(task, name))
        return exits

    def _manager_call(self, call: Callable[[], T]) -> T:
        """A call to the manager during the run, made again once if it failed but the manager
        answers (a slow engine on a loaded machine); a manager that stopped answering is the
        end of the run's way to Redis (the forwarder runs beside it), and is said so."""
        assert self.host
        try:
            return call()
        except InfraError as exc:
            if self.host.answers():
                return call()
            raise RedisLost(f"the swarm manager at {self.host.base_url} stopped answering ({exc}); the "
                            "master reached Redis through the forwarder there") from None

    def _exit_of(self, task: TaskInfo, name: str) -> WorkerExit:
        assert self.host
        container = self.host.container(task.container_id) if task.container_id else None
        oom = bool(container and container.oom_killed)
        if oom:
            reason = "was killed: out of memory"
        elif task.exit_code is not None and task.state in ("failed", "complete"):
            reason = f"exited with code {task.exit_code} (task {task.state})"
        else:
            reason = f"task {task.state}: {task.message or 'no reason given'}"
        log_tail = self._service_logs("worker", tail=30, task_ids=[task.id])
        return WorkerExit(name, reason, oom=oom, log=log_tail)

    def replace(self, name: str) -> str:
        """Swarm reschedules a dead worker's slot by itself: name its new task if it is there."""
        self.states[name] = "replaced"
        match = WORKER_NAME.fullmatch(name)
        slot = int(match.group(1)) if match else 0
        newer = [t for t in self._manager_call(self._worker_tasks)
                 if t.slot == slot and not t.ended and t.desired == "running" and t.container_id]
        return task_worker_name(newer[-1]) if newer else f"a new task in slot {slot} (Swarm reschedules it)"

    def kill_worker(self, name: str) -> None:
        """Kill a worker task's container through the engine, as a crash would (chaos mode).
        On one node the engine runs every task; on a multi-node swarm the task's own node
        must be asked (its engine's API), which this backend does not reach."""
        assert self.host
        for task in self._worker_tasks():
            if task_worker_name(task) == name and not task.ended and task.container_id:
                if self.host.container(task.container_id) is None:
                    raise InfraError(f"{name} runs on another swarm node; kill it there "
                                     "(docker kill on that node)")
                self.host.kill(task.container_id)
                return

    def _service_logs(self, role: str, tail: int = 40, task_ids: list[str] | None = None) -> str:
        assert self.host
        try:
            return b"".join(dockerswarm.service_logs(self.host, service_name(self.id, role), tail=tail,
                                                     task_ids=task_ids or ())).decode(errors="replace")
        except InfraError:
            return "(no logs)"

    def _logs_of_forwarder(self) -> str:
        assert self.host
        try:
            return b"".join(self.host.logs(forward_name(self.id), tail=20)).decode(errors="replace")
        except InfraError:
            return "(no logs)"

    # -- teardown -------------------------------------------------------------------------

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.keep and exc_type is None:
            log.info("cluster %s kept running (--keep): mrctl status, mrctl down --job %s", self.id, self.id)
            self.mark_kept()
            assert self.host
            self.host.close()
            return
        self.teardown()

    def teardown(self) -> None:
        """Remove the services, secrets, forwarder, networks and state file (by label). A
        manager that does not answer (its node lost) is not waited on: what it held went with
        it, and `mrctl down --job ID` removes the rest if it comes back."""
        if self.host is None:
            return
        try:
            if not self.host.answers():
                log.warning("the swarm manager at %s does not answer: cluster %s's services, secrets and networks "
                            "went with it; worker containers on other nodes stay until their engines remove "
                            "them (mrctl down --job %s, if the manager comes back)", self.host.base_url, self.id,
                            self.id)
                return
            self.host.bound_calls(TEARDOWN_TIMEOUT_S)
            remove_cluster(self.host, self.id)
        finally:
            self.host.close()


def _bytes(memory: str) -> int:
    """Docker's memory notation ("512m", "2g", "1048576") as bytes, for service Resources."""
    size = size_in(memory.strip(), DOCKER_UNITS, fractions=False)
    if size is None:
        raise InfraError(f"worker memory limit {memory!r}: expected e.g. 512m or 2g")
    return size
