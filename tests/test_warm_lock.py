"""A warm cluster's Redis side (real redis-server): the one-job lock, dropping what a run left,
the history of runs; and how `mrctl status` prints a warm cluster."""

from __future__ import annotations

import json
import time

from mrctl.broker import Broker, keys
from mrctl.broker.meta import JobMeta


def test_warm_cluster_keys_are_pinned():
    assert keys.cluster_lock() == "mrctl:lock"
    assert keys.history() == "mrctl:history"
    assert keys.run_patterns("R") == ("mrctl:R:*", "mrctl:R.s*:*")


def test_one_run_holds_the_lock_until_it_releases_it(broker):
    assert broker.acquire_cluster("run-a") is None
    assert broker.acquire_cluster("run-b") == "run-a"  # refused, naming the holder
    assert broker.cluster_holder() == "run-a"
    assert broker.renew_cluster("run-a") and not broker.renew_cluster("run-b")
    assert not broker.release_cluster("run-b", "b")  # only the holder releases it
    assert broker.release_cluster("run-a", "a") and broker.cluster_holder() is None
    assert broker.acquire_cluster("run-b") is None


def test_a_killed_runs_lock_expires_by_itself(broker):
    assert broker.acquire_cluster("killed", ttl_ms=1500) is None
    assert broker.acquire_cluster("next") == "killed"
    time.sleep(1.7)  # nobody renews it: the TTL is the only way out, and it is short here
    assert broker.acquire_cluster("next") is None
    assert not broker.renew_cluster("killed")


def test_releasing_stops_the_workers_serving_the_run_only(broker):
    broker.acquire_cluster("h")
    broker.r.set(keys.current_job(), "R.s3")  # the run's last step
    broker.r.delete(keys.wake())
    broker.release_cluster("h", "R")
    assert broker.current_job() is None
    # idle workers wake at once: a run's process ends now, not when the next job is published
    assert broker.r.llen(keys.wake()) == keys.WAKE_MAX
    broker.acquire_cluster("h2")
    broker.r.set(keys.current_job(), "Other")
    broker.release_cluster("h2", "R")  # a run whose lock had expired: not its job to clear
    assert broker.current_job() == "Other"


def test_drop_run_removes_the_run_and_its_steps_and_nothing_else(broker):
    run, other = "20261129-060000-ab12", "20261129-060001-cd34"
    for job in (run, f"{run}.s1", f"{run}.s12", other):
        broker.publish_job(job, JobMeta(state="running"), {"job.py": ""})
        broker.add_map_task(job, "m:0", {"kind": "map", "index": 0}, b"x\n")
    broker.record_run({"job": "x"})
    assert broker.drop_run(run) == 3 * 5  # meta, code, queue, task and chunk of each
    left = {k.decode() for k in broker.r.keys("*")}
    assert not any(k.startswith(f"mrctl:{run}") for k in left)
    assert {k for k in left if k.startswith(f"mrctl:{other}:")} and "mrctl:history" in left
    assert broker.drop_stale_jobs() > 0
    # the cluster-wide keys stay: the current job pointer, the history, the (bounded) wake list
    assert {k.decode() for k in broker.r.keys("*")} == {"mrctl:current", "mrctl:history", "mrctl:wake"}


def test_history_keeps_the_newest_runs_only(broker):
    for i in range(keys.HISTORY_KEPT + 5):
        broker.record_run({"job": f"j{i}", "name": "wc", "state": "succeeded", "elapsed": 0.1,
                           "finished": 1.0})
    runs = broker.runs()
    assert len(runs) == keys.HISTORY_KEPT and runs[0]["job"] == f"j{keys.HISTORY_KEPT + 4}"


def test_forget_workers_drops_their_rows(broker):
    for name in ("worker-1", "worker-2"):
        broker.heartbeat(name, {"state": "idle"})
    broker.forget_workers(["worker-1"])
    info, beats, _ = broker.worker_rows()
    assert set(info) == set(beats) == {"worker-2"}


def test_status_of_a_warm_cluster_idle_and_busy():
    from mrctl.backends.fleet import ClusterStatus, WarmJob, format_status
    from mrctl.observe.snapshot import WorkerRow

    finished = time.mktime((2026, 11, 29, 6, 1, 2, 0, 0, -1))
    history = (WarmJob("20261129-060100-ab12", "wordcount", "succeeded", 0.42, finished),)
    containers = (("redis", "running"), ("worker-1", "running"), ("worker-2", "exited"),
                  ("worker-3", "running"))
    idle = ClusterStatus("dev", "", "", "idle", "idle", 0, 0, 0, 0, None,
                         (WorkerRow("worker-1", "idle", None, None, 3, 0.4),), containers,
                         warm=True, history=history)
    text = format_status([idle]).splitlines()
    assert text[0] == "cluster dev  warm, 2 workers  idle"
    assert "  recent jobs (1, newest first):" in text
    assert "    06:01:02  wordcount      20261129-060100-ab12  succeeded   0.42s" in text
    busy = ClusterStatus("dev", "wordcount", "20261129-060200-cd34", "map", "running", 1, 4, 0, 4, 2.0,
                         (), containers, warm=True, history=history)
    assert format_status([busy]).splitlines()[:2] == [
        "cluster dev  warm, 2 workers  job wordcount (20261129-060200-cd34)  phase map  state running, 2s",
        "  map 1/4   reduce 0/4"]
    json.dumps([__import__("dataclasses").asdict(busy)])  # `status --json` can print it


def test_a_broker_that_never_locks_registers_no_lock_script(redis_url):
    b = Broker(redis_url, retries=0)
    assert "_renew_lock" not in vars(b)
    b.close()


def test_a_plain_down_leaves_warm_clusters_running_and_says_so():
    from mrctl.backends.fleet import DownResult, format_down, left_warm
    from mrctl.backends.warm import WARM_LABEL
    from mrctl.dockerapi.host import LABEL_CLUSTER, ContainerInfo

    def redis(cid: str, warm: bool) -> ContainerInfo:
        labels = {LABEL_CLUSTER: cid, **({WARM_LABEL: cid} if warm else {})}
        return ContainerInfo(f"x{cid}", f"mrctl-{cid}-redis", "running", labels, None, False, {})

    docker = {"dev": [redis("dev", True)], "k1": [redis("k1", False)]}
    # --all too: a warm cluster goes only when named (issue 24)
    assert left_warm(docker, None, everything=False) == left_warm(docker, None, everything=True) == ("dev",)
    assert left_warm(docker, "dev", everything=False) == ()
    text = format_down(DownResult([("k1", 3)], [], warm_kept=("dev",)))
    assert text.splitlines() == ["removed cluster k1: 3 containers and its network",
                                 "warm cluster dev left running (mrctl down --cluster dev)"]


def test_a_run_whose_lock_was_taken_over_stops_at_its_next_supervision(redis_url, broker, monkeypatch):
    """A master stalled past the lock's TTL, and another run took the cluster: the first one's
    renewal finds the lock gone, and its next supervise() ends it (two jobs would fight over
    the workers' current job)."""
    import threading

    import pytest

    from mrctl.backends import warm
    from mrctl.errors import InfraError

    monkeypatch.setattr(warm, "RENEW_EVERY_S", 0.01)
    cluster = warm.AttachedCluster("dev", "20261129-000000-ab12", "wordcount")  # not entered: no Docker
    cluster.broker = Broker(redis_url, retries=0)
    broker.acquire_cluster("another run")
    renewer = threading.Thread(target=cluster._renew)
    renewer.start()
    renewer.join(timeout=5)
    cluster.broker.close()
    assert not renewer.is_alive()
    with pytest.raises(InfraError, match="the lock of warm cluster dev expired while job 20261129-000000-ab12 ran"):
        cluster.supervise()
