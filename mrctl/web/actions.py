"""What the page's buttons do: each goes through the channel the CLI would use. Cancel and
kill are commands in the run's control list (Redis, taken by its master at its next tick);
removing a kept or warm Docker cluster is `mrctl down` (mrctl.backends.fleet)."""

from __future__ import annotations

from mrctl.backends import fleet as clusters
from mrctl.backends.discovery import RUNNING_STATES, find, find_cluster, recorded
from mrctl.broker import Broker
from mrctl.errors import MrctlError

MESSAGES = {"cancel": "cancel sent: the run stops at its master's next tick and tears down",
            "kill": "kill sent: the master kills a random busy worker (its task is retried)"}


class ActionRefused(MrctlError):
    """The action does not apply (no such running job, a cluster still running a job)."""

    exit_code = 2


def command(job_id: str, what: str) -> str:
    """Send `what` (cancel | kill) to the running job `job_id`."""
    if (end := recorded(job_id)) is not None:  # e.g. a --keep cluster still labelled with it
        raise ActionRefused(f"run {job_id} has ended: {end[0]} (exit {end[1]})")
    run = find(job_id)
    if run is None:
        raise ActionRefused(f"no run {job_id} is going on")
    if run.redis_url is None:
        raise ActionRefused(f"run {job_id}'s Redis cannot be reached from here")
    broker = Broker(run.redis_url, retries=0, socket_timeout=10)  # a loaded machine answers late
    try:
        broker.send_control(job_id, what)
    finally:
        broker.close()
    return MESSAGES[what]


def remove_cluster(cid: str) -> str:
    """`mrctl down` for one Docker cluster that is not running a job (kept or warm)."""
    status = find_cluster(cid)
    if status is None:
        raise ActionRefused(f"no Docker cluster {cid}")
    if status.state in RUNNING_STATES:
        raise ActionRefused(f"cluster {cid} is running job {status.job_id}: cancel the job first")
    result = clusters.down(None, False, cluster=cid) if status.warm else clusters.down(cid, False)
    return clusters.format_down(result)
