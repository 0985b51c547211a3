"""A swarm cluster's tasks as mrctl sees them: the names of its services and of the workers
their tasks run, users' names for its containers, its logs, and its workers lost with a node.

Worker names are `worker-<slot>.<first 5 of the container id>` (WORKER_COMMAND): a rescheduled
task is a new worker, not the dead one coming back; `mrctl logs worker-2` shows every task of
slot 2.

A lost node (measured on tests/cluster3.py's swarm, issue 27): the manager marks a node `down`
about 12 s after it stops answering (its heartbeat period is 5 s). Until then its tasks look
running; from then on they stay `running` with desired state `shutdown` (Swarm cannot hear them
end: it calls them orphaned a day later), and Swarm starts replacements on the other nodes.
SwarmCluster.supervise() reports such tasks as lost with their node (lost_with_node); the master
has usually requeued their attempts already, by lease.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from mrctl.backends import WorkerExit
from mrctl.backends.docker import short_name
from mrctl.dockerapi import swarm as dockerswarm
from mrctl.dockerapi.host import LABEL_ROLE, ContainerInfo, DockerHost
from mrctl.dockerapi.swarm import NodeInfo, TaskInfo

WORKER_NAME = re.compile(r"worker-(\d+)(?:\.(\w+))?")
# The worker names itself from its slot and its container's HOSTNAME (the container id's
# first 12 characters, as Docker sets it): Swarm's templates know the slot and the task id,
# but cannot shorten the id (a template is checked before any task exists, with empty values).
WORKER_COMMAND = ["sh", "-c", 'MRCTL_WORKER_NAME="worker-$MRCTL_SLOT.$(echo "$HOSTNAME" | cut -c1-5)" '
                  'exec python -P -m mrctl.worker']


def service_name(cluster: str, role: str) -> str:
    return f"mrctl-{cluster}-{role}"


def forward_name(cluster: str) -> str:
    return f"mrctl-{cluster}-forward"


def task_worker_name(task: TaskInfo) -> str:
    """The name the worker of `task` reports (see WORKER_COMMAND). A task that has no
    container yet has no worker either: it is named by its task id, which no worker reports."""
    return f"worker-{task.slot}.{(task.container_id or task.id)[:5]}"


# Desired states past running: Swarm wants the task gone. A replacement waiting out its restart
# delay is desired `ready` (then `running`), unassigned to a node yet: it is not given up on.
_UNWANTED = frozenset({"shutdown", "remove", "orphaned", "complete", "failed", "rejected"})


def given_up_on(task: TaskInfo) -> bool:
    """Whether Swarm gave up on a task it cannot hear end: not ended, on a node, yet no longer
    wanted (on a down node, for good; on a live one, for the moment before it ends)."""
    return not task.ended and bool(task.node_id) and task.desired in _UNWANTED


def lost_with_node(given_up: list[TaskInfo], nodes: list[NodeInfo]) -> dict[str, NodeInfo]:
    """Task id -> its node, for the given-up tasks whose node is not ready (down, or gone
    from the swarm): they will never be heard to end."""
    known = {n.id: n for n in nodes}
    gone = {t.id: known.get(t.node_id) or NodeInfo(t.node_id, t.node_id, "worker", "removed", "", "?")
            for t in given_up}
    return {tid: node for tid, node in gone.items() if node.state != "ready"}


def lost_exit(name: str, node: NodeInfo) -> WorkerExit:
    """A worker lost with its node: no exit code, no log (the node is gone), no blame."""
    return WorkerExit(name, f"was lost with swarm node {node.hostname} ({node.addr}), which the manager "
                            f"marks {node.state}")


def display_name(container: ContainerInfo, cluster: str) -> str:
    """A container's name as users type it: a swarm task's by its worker name (or `redis`),
    any other by its short name (`forward`, `worker-2`)."""
    task = container.labels.get("com.docker.swarm.task.name")  # <service>.<slot>.<task id>
    if task is None:
        return short_name(container.name, cluster)
    if container.labels.get(LABEL_ROLE) != "worker":
        return container.labels.get(LABEL_ROLE, task)
    return f"worker-{task.split('.')[1]}.{container.id[:5]}"


def swarm_logs(host: DockerHost, cluster: str, name: str, tail: int | str = "all",
               follow: bool = False) -> Iterator[bytes]:
    """`mrctl logs` of a swarm cluster: `redis`, `forward`, `worker-2` (every task of slot 2,
    from any node, through the service's logs) or `worker-2.3f9a1` (that task only)."""
    from mrctl.errors import SpecError

    workers = dockerswarm.tasks(host, service_name(cluster, "worker"))
    names = sorted({"redis", "forward"} | {f"worker-{t.slot}" for t in workers}
                   | {task_worker_name(t) for t in workers})
    if name == "forward":
        return host.logs(forward_name(cluster), tail=tail, follow=follow)
    if name == "redis":
        return dockerswarm.service_logs(host, service_name(cluster, "redis"), tail, follow)
    chosen = [t.id for t in workers if name in (f"worker-{t.slot}", task_worker_name(t))]
    if not chosen:
        raise SpecError(f"no worker {name!r} in cluster {cluster}; there are: {', '.join(names)}")
    return dockerswarm.service_logs(host, service_name(cluster, "worker"), tail, follow, task_ids=chosen)
