"""The swarm backend across a real multi-node swarm (issue 27): three dockerd nodes on this host
(tests/cluster3.py), the images copied to each (`mrctl images --push-to`), word count with six
workers that Swarm spreads over the three nodes, exact; and nothing left after `down`.

The host's engine is not in the swarm (node1 manages it), so this test needs no swarm of the
session's; it carries the `swarm` marker all the same, to run in the swarm tests' process
(one swarm-ish thing at a time on a 2-core machine).
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import time

import pytest
from cluster3 import Cluster3, left_behind
from conftest import ROOT, corpus_files, sequential_wordcount

from mrctl.backends.swarm import SwarmCluster
from mrctl.dockerapi import swarm as dockerswarm
from mrctl.dockerapi.host import LABEL_ROLE, DockerHost
from mrctl.dockerapi.swarm import NodeInfo, TaskInfo
from mrctl.errors import InfraError
from mrctl.images.build import ClusterImages

COPIES = 2  # the Gutenberg books twice: 16 map tasks


@pytest.mark.swarm
@pytest.mark.docker
@pytest.mark.slow
def test_wordcount_across_three_nodes(tmp_path, docker_host, clean_docker):
    inputs = tmp_path / "input"
    inputs.mkdir()
    for k in range(COPIES):
        for book in corpus_files():
            shutil.copy(book, inputs / f"{book.stem}-{k}.txt")
    out = tmp_path / "wordcount.json"
    cluster = Cluster3(nodes=3)
    with cluster:
        push = [arg for url in cluster.node_urls for arg in ("--push-to", url)]
        images = _mrctl("images", "--build", *push)
        assert images.returncode == 0, images.stderr[-3000:]
        log = tmp_path / "run.log"
        with log.open("w") as f:
            run = subprocess.Popen(
                [sys.executable, "-m", "mrctl", "run", "jobspecs/wordcount.yaml", "--backend", "swarm",
                 "--workers", "6", "--docker-host", cluster.manager_url, "--input", str(inputs), "-o", str(out)],
                cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, text=True)
            placed = _worker_nodes(cluster.manager_url, run)
            run.wait(timeout=300)
        assert run.returncode == 0, log.read_text()[-3000:]
        hostnames = cluster.node_hostnames()
    per_node = collections.Counter(hostnames.get(node, node) for node in placed.values())
    assert len(per_node) >= 3, f"workers ran on {dict(per_node)} only"
    assert out.read_text(encoding="utf-8") == sequential_wordcount(sorted(inputs.glob("*.txt")))
    assert left_behind(docker_host, cluster.id) == []


def _mrctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrctl", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def _worker_nodes(manager_url: str, run: subprocess.Popen, timeout: float = 300) -> dict[str, str]:
    """Task id -> node id of every worker task the manager showed running while `run` ran."""
    placed: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    with DockerHost(base_url=manager_url) as manager:
        while run.poll() is None and time.monotonic() < deadline:
            for service, _ in dockerswarm.services(manager, {LABEL_ROLE: "worker"}):
                for task in dockerswarm.tasks(manager, service):
                    if task.state == "running":
                        placed[task.id] = task.node_id
            time.sleep(0.3)
    return placed


def test_nodes_without_the_worker_image_fail_the_start_at_once_naming_them(monkeypatch):
    """Seen on a three-node swarm: a run that built the worker image on the manager (the source
    had changed since `mrctl images --push-to`) had its tasks rejected by the two other nodes
    ("No such image"), and failed only after the 60 s wait for heartbeats, as "workers (tasks
    not started) sent no heartbeat". Now it fails at the first rejection, naming the nodes."""
    cluster = SwarmCluster.__new__(SwarmCluster)
    cluster.host = object()  # type: ignore[assignment]
    cluster.images = ClusterImages("mrctl-worker:abc", "mrctl-base:bookworm", ["redis-server"], offline=True)
    nodes = [NodeInfo("n1", "node1", "manager", "ready", "active", "172.18.0.2"),
             NodeInfo("n2", "node2", "worker", "ready", "active", "172.18.0.3")]
    monkeypatch.setattr(dockerswarm, "nodes", lambda host: nodes)

    def task(node: str, state: str, message: str) -> TaskInfo:
        return TaskInfo(f"t-{node}-{state}", 1, state, "running", message, None, None, node, "2026-12-07T04:07:00Z")

    cluster._check_images([task("n1", "running", "started")])  # nothing rejected: nothing said
    with pytest.raises(InfraError) as info:
        cluster._check_images([task("n1", "running", "started"),
                               task("n2", "rejected", "No such image: mrctl-worker:abc")])
    message = str(info.value)
    assert info.value.exit_code == 3
    assert "node2 (172.18.0.3)" in message and "node1" not in message, message
    assert "No such image: mrctl-worker:abc" in message and "--push-to" in message and "--registry" in message
