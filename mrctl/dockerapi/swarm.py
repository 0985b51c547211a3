"""The Swarm part of the Docker API, through docker-py: swarm state, overlay networks, secrets,
services and their tasks, and images carried to other nodes' engines without a registry. With
mrctl.dockerapi.host, the only modules that import `docker`.

Every call goes through a `DockerHost`'s client, and Docker errors become `InfraError` here, as
in mrctl.dockerapi.host. Objects carry labels like every object mrctl creates; listing and removal
select by them only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mrctl.dockerapi import OnFirstUse
from mrctl.dockerapi.host import DockerHost, _translated, label_filters, removing
from mrctl.errors import InfraError

docker = OnFirstUse("docker")  # on first use (mrctl.dockerapi)
requests = OnFirstUse("requests")

ENDED_TASK_STATES = ("complete", "failed", "shutdown", "rejected", "orphaned", "remove")


@dataclass(frozen=True)
class SwarmState:
    node_state: str  # inactive | pending | active | error | locked
    manager: bool  # this engine may create services (ControlAvailable)
    node_addr: str  # the address the node advertises


@dataclass(frozen=True)
class NodeInfo:
    """One node of a swarm, as its manager lists it."""

    id: str
    hostname: str
    role: str  # manager | worker
    state: str  # Status.State: unknown | down | ready | disconnected
    availability: str  # active | pause | drain
    addr: str  # Status.Addr: the address it is reached at


@dataclass(frozen=True)
class TaskInfo:
    """One task of a service: a replica's slot, and the container that runs it (if any yet)."""

    id: str
    slot: int
    state: str  # Status.State: new ... running, complete, failed, shutdown, rejected ...
    desired: str  # running | shutdown ...
    message: str  # Status.Err or Status.Message, e.g. "task: non-zero exit (137)"
    exit_code: int | None
    container_id: str | None
    node_id: str
    created: str  # RFC 3339, sorts in time order

    @property
    def ended(self) -> bool:
        return self.state in ENDED_TASK_STATES


@dataclass(frozen=True)
class SecretFile:
    """A Swarm secret for a service, mounted at /run/secrets/<target> with owner and mode."""

    name: str
    data: bytes
    target: str
    uid: int
    mode: int = 0o400


# -- the swarm ------------------------------------------------------------------------------


def swarm_state(host: DockerHost) -> SwarmState:
    with _translated("reading the engine's swarm state"):
        swarm = host.client.info().get("Swarm") or {}
    return SwarmState(str(swarm.get("LocalNodeState", "inactive")), bool(swarm.get("ControlAvailable")),
                      str(swarm.get("NodeAddr", "")))


def swarm_init(host: DockerHost, advertise_addr: str = "127.0.0.1") -> None:
    """`docker swarm init`: make this engine a single-node swarm's manager."""
    with _translated("initialising a swarm (docker swarm init)"):
        host.client.swarm.init(advertise_addr=advertise_addr, listen_addr=f"{advertise_addr}:2377")


def worker_join_token(host: DockerHost) -> str:
    """The token a worker node joins this manager's swarm with (`docker swarm join-token worker`)."""
    with _translated("reading the swarm's join token"):
        host.client.swarm.reload()
        return str(host.client.swarm.attrs["JoinTokens"]["Worker"])


def swarm_join(host: DockerHost, manager_addr: str, token: str, advertise_addr: str) -> None:
    """`docker swarm join`: this engine joins the swarm of the manager at `manager_addr` (its
    swarm port, 2377), as the kind of node `token` says; it listens on `advertise_addr`:2377."""
    with _translated(f"joining the swarm of {manager_addr} (docker swarm join)"):
        host.client.swarm.join(remote_addrs=[f"{manager_addr}:2377"], join_token=token,
                               listen_addr=f"{advertise_addr}:2377", advertise_addr=advertise_addr)


def nodes(host: DockerHost) -> list[NodeInfo]:
    """The swarm's nodes, as this manager sees them (`docker node ls`), by hostname."""
    with _translated("listing the swarm's nodes"):
        found = host.client.api.nodes()
    return sorted((NodeInfo(str(n.get("ID", "")), str((n.get("Description") or {}).get("Hostname", "")),
                            str((n.get("Spec") or {}).get("Role", "")), str((n.get("Status") or {}).get("State", "")),
                            str((n.get("Spec") or {}).get("Availability", "")),
                            str((n.get("Status") or {}).get("Addr", ""))) for n in found),
                  key=lambda n: n.hostname)


def label_node(host: DockerHost, node_id: str, labels: dict[str, str]) -> None:
    """`docker node update --label-add NAME=VALUE NODE` for each label (through a manager): what
    placement constraints such as node.labels.NAME==VALUE match."""
    with _translated(f"labelling swarm node {node_id}"):
        node = host.client.nodes.get(node_id)
        spec = dict(node.attrs.get("Spec") or {})
        spec["Labels"] = {**(spec.get("Labels") or {}), **labels}
        node.update(spec)


def swarm_leave(host: DockerHost) -> None:
    """`docker swarm leave --force`: only for a swarm its caller made."""
    with _translated("leaving the swarm (docker swarm leave --force)"):
        host.client.swarm.leave(force=True)


def require_manager(host: DockerHost) -> SwarmState:
    """The swarm state, or InfraError (exit 3) with the fix when this engine manages none."""
    state = swarm_state(host)
    if state.node_state != "active" or not state.manager:
        what = ("is not part of a swarm" if state.node_state == "inactive"
                else f"is a swarm {'worker' if state.node_state == 'active' else state.node_state}, not a manager")
        raise InfraError(f"--backend swarm needs a Swarm manager, and this Docker engine {what}. "
                         "Make a single-node swarm with: docker swarm init --advertise-addr 127.0.0.1 "
                         "(or point DOCKER_HOST / --docker-host at a manager)")
    return state


# -- networks and secrets -------------------------------------------------------------------


def create_overlay(host: DockerHost, name: str, labels: dict[str, str], internal: bool = True,
                   encrypted: bool = False) -> None:
    """An attachable overlay network: services join it, and so may a plain container (the
    forwarder); `internal` ones have no route out; `encrypted` ones carry their traffic between
    nodes in IPsec (`--opt encrypted`)."""
    with _translated(f"creating overlay network {name}"):
        host.client.networks.create(name, driver="overlay", attachable=True, internal=internal,
                                    labels=labels, check_duplicate=True,
                                    options={"encrypted": ""} if encrypted else None)


def create_secret(host: DockerHost, name: str, data: bytes, labels: dict[str, str]) -> str:
    """A Swarm secret (kept encrypted in the swarm's Raft log); returns its id."""
    with _translated(f"creating secret {name}"):
        return str(host.client.secrets.create(name=name, data=data, labels=labels).id)


def secrets(host: DockerHost, labels: dict[str, str]) -> list[str]:
    """Ids of the secrets carrying all of `labels` ([] when this engine manages no swarm)."""
    if not swarm_state(host).manager:
        return []
    with _translated("listing secrets"):
        return [s.id for s in host.client.secrets.list(filters=label_filters(labels))]


def remove_secret(host: DockerHost, secret_id: str) -> None:
    with removing(f"secret {secret_id}"):
        host.client.api.remove_secret(secret_id)


# -- services and tasks ---------------------------------------------------------------------


def create_service(host: DockerHost, name: str, image: str, *, labels: dict[str, str],
                   networks: Sequence[str], secret_files: Sequence[SecretFile] = (),
                   replicas: int = 1, endpoint_mode: str = "dnsrr", restart: str = "any",
                   restart_delay_s: float = 1.0,
                   limits: dict[str, int] | None = None, pids: int | None = None,
                   tmpfs: Sequence[str] = (), **container: Any) -> str:
    """A replicated service; returns its id. Its secrets are created first (labelled like the
    service), and `container` holds docker-py's container-spec options (command, user, env,
    hostname, cap_drop, read_only, init ...). Tasks that end are restarted (condition `any`,
    no limit: mrctl's crash-loop guard decides when deaths are too many); task containers get
    the service's labels too, so that the engine's container listing finds them.

    `limits` are Resources (cpu_limit in nano-CPUs, mem_limit in bytes); `pids` goes into
    Resources.Limits.Pids (API 1.41+); `tmpfs` targets become tmpfs mounts (a read-only root
    filesystem needs a writable /tmp).
    """
    refs = []
    for f in secret_files:
        secret_id = create_secret(host, f.name, f.data, labels)
        refs.append(docker.types.SecretReference(secret_id, f.name, filename=f.target, uid=str(f.uid),
                                                 gid=str(f.uid), mode=f.mode))
    resources = docker.types.Resources(**(limits or {}))
    if pids:
        resources.setdefault("Limits", {})["Pids"] = pids
    mounts = [docker.types.Mount(target, None, type="tmpfs") for target in tmpfs]
    with _translated(f"creating service {name}"):
        service = host.client.services.create(
            image, name=name, labels=labels, container_labels=labels, networks=list(networks),
            secrets=refs, mode=docker.types.ServiceMode("replicated", replicas=replicas),
            endpoint_spec=docker.types.EndpointSpec(mode=endpoint_mode),
            restart_policy=docker.types.RestartPolicy(restart, delay=int(restart_delay_s * 1e9)),
            resources=resources, mounts=mounts, **container)
    return str(service.id)


def force_update(host: DockerHost, name: str) -> None:
    """`docker service update --force`: the service replaces its tasks (a new one for a task that
    failed, whatever the service's restart policy)."""
    with _translated(f"updating service {name}"):
        host.client.services.get(name).force_update()


def services(host: DockerHost, labels: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """(name, labels) of the services carrying all of `labels` ([] when this engine manages
    no swarm: a plain engine has no services to find)."""
    if not swarm_state(host).manager:
        return []
    with _translated("listing services"):
        found = host.client.services.list(filters=label_filters(labels))
    return sorted((s.name, dict(s.attrs.get("Spec", {}).get("Labels") or {})) for s in found)


def remove_service(host: DockerHost, name: str) -> None:
    """Remove a service (Swarm stops its tasks); gone already is fine."""
    with removing(f"service {name}"):
        host.client.api.remove_service(name)


def tasks(host: DockerHost, service: str) -> list[TaskInfo]:
    """Every task of a service that Swarm still remembers (its task history included), oldest
    first; [] when the service is gone."""
    try:
        found = host.client.api.tasks(filters={"service": service})
    except docker.errors.NotFound:
        return []
    except docker.errors.APIError as exc:
        raise InfraError(f"listing the tasks of service {service}: {exc.explanation or exc}") from None
    except requests.exceptions.RequestException as exc:  # the manager went silent or away
        raise InfraError(f"listing the tasks of service {service}: the engine did not answer: {exc}") from None
    return sorted((_task(t) for t in found), key=lambda t: t.created)


def _task(attrs: dict[str, Any]) -> TaskInfo:
    status = attrs.get("Status") or {}
    container = status.get("ContainerStatus") or {}
    return TaskInfo(
        id=str(attrs.get("ID", "")), slot=int(attrs.get("Slot") or 0), state=str(status.get("State", "")),
        desired=str(attrs.get("DesiredState", "")), message=str(status.get("Err") or status.get("Message") or ""),
        exit_code=container.get("ExitCode"), container_id=container.get("ContainerID") or None,
        node_id=str(attrs.get("NodeID", "")), created=str(attrs.get("CreatedAt", "")))


def service_logs(host: DockerHost, service: str, tail: int | str = "all", follow: bool = False,
                 task_ids: Sequence[str] = ()) -> Iterator[bytes]:
    """A service's logs from every node, through the manager; only the lines of `task_ids`
    when given (each line is then read with its task's id, and given without it)."""
    with _translated(f"reading logs of service {service}"):
        stream = host.client.api.service_logs(service, stdout=True, stderr=True, tail=tail,
                                              follow=follow, details=bool(task_ids))
    with _translated(f"reading logs of service {service}"):
        for chunk in stream:
            if not task_ids:
                yield chunk
                continue
            for line in chunk.splitlines(keepends=True):
                details, _, text = line.partition(b" ")
                if any(f"com.docker.swarm.task.id={t}".encode() in details for t in task_ids):
                    yield text



# -- images on other nodes --------------------------------------------------------------------


def save_image(host: DockerHost, ref: str) -> Iterator[bytes]:
    """`docker save`: the image (with its tag) as a tar stream, in chunks."""
    with _translated(f"saving image {ref}"):
        chunks = host.client.images.get(ref).save(chunk_size=1 << 20, named=ref)
    with _translated(f"saving image {ref}"):
        yield from chunks


def push_image(host: DockerHost, ref: str, target: str) -> str:
    """`docker tag` then `docker push`: image `ref` into a registry as `target` (REGISTRY/NAME:TAG),
    for every node to pull; returns `target@DIGEST`, the name a service pins (as `docker service
    create` resolves a tag), so every node runs the same content. Layers the registry has
    already are not sent again. A push that fails takes back the tag it made."""
    repo, _, tag = target.rpartition(":")
    tagged_before = host.image_id(target) is not None
    digest = None
    try:
        with _translated(f"pushing {ref} as {target}"):
            host.client.images.get(ref).tag(repo, tag)
            for status in host.client.api.push(repo, tag=tag, stream=True, decode=True):
                if isinstance(status, dict) and (said := _stream_error(status)):
                    raise InfraError(f"pushing {ref} as {target}: Docker said: {said}")
                if isinstance(status, dict) and (status.get("aux") or {}).get("Digest"):
                    digest = status["aux"]["Digest"]
        if digest is None:
            raise InfraError(f"pushing {ref} as {target}: the engine reported no digest")
    except requests.exceptions.RequestException as exc:  # the stream cut or timed out
        _untag(host, target, tagged_before)
        raise InfraError(f"pushing {ref} as {target}: {exc}") from None
    except InfraError:
        _untag(host, target, tagged_before)
        raise
    return f"{target}@{digest}"


def _stream_error(status: dict[str, Any]) -> str | None:
    """The error an engine's progress stream reports (`error`, or `errorDetail` alone)."""
    return status.get("error") or (status.get("errorDetail") or {}).get("message")


def _untag(host: DockerHost, target: str, keep: bool) -> None:
    if not keep:
        with removing(f"tag {target}"):
            host.client.images.remove(target)


def load_image(host: DockerHost, chunks: Iterable[bytes]) -> None:
    """`docker load` of a tar stream, sent as it is read (the image is never held whole)."""
    with _translated("loading an image"):
        for status in host.client.api.load_image(chunks):
            if isinstance(status, dict) and (said := _stream_error(status)):
                raise InfraError(f"loading an image: Docker said: {said}")
