"""The swarm backend on a single-node swarm the session makes (and leaves as it found it), and
the docker backend against an engine reached over TCP.

Every object these tests create carries the session's label; the checks after each test look at
those only, and the swarm is left only when this session made it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from unittest import mock

import pytest
from conftest import ROOT, SESSION, SESSION_LABEL, corpus_files, require_marker, sequential_wordcount
from jobs import REDIS_URL, SLOW, WORDCOUNT, make_spec, write_crash_spec
from procs import run_mrctl as _mrctl
from served import free_port

from mrctl.errors import InfraError
from mrctl.master.chaos import ChaosPlan
from mrctl.master.driver import RunOptions, run_job

MINE = {SESSION_LABEL: SESSION}


@pytest.fixture(scope="session")
def swarm(docker_host):
    """A swarm manager for the session: the engine's own swarm if it has one (under pytest-xdist,
    the one the controller made for the run: see conftest.pytest_sessionstart), else a
    single-node swarm made here (`docker swarm init --advertise-addr 127.0.0.1`) and left at
    the end; a swarm that was there before is never left."""
    from mrctl.dockerapi import swarm as dockerswarm

    state = dockerswarm.swarm_state(docker_host)
    made = state.node_state == "inactive"
    if made:
        dockerswarm.swarm_init(docker_host, "127.0.0.1")
    elif not state.manager:
        pytest.fail(f"this engine is a swarm {state.node_state} node but not a manager: the swarm tests need one")
    yield docker_host
    if made:
        dockerswarm.swarm_leave(docker_host)


@pytest.fixture
def clean_swarm(request, swarm, clean_docker):
    """After the test: no service or secret of this session (checked before clean_docker's
    container and network check, since services own containers)."""
    from mrctl.dockerapi import swarm as dockerswarm

    require_marker(request, "swarm")
    yield swarm
    services = dockerswarm.services(swarm, MINE)
    found_secrets = dockerswarm.secrets(swarm, MINE)
    for name, _ in services:
        dockerswarm.remove_service(swarm, name)
    for secret in found_secrets:
        dockerswarm.remove_secret(swarm, secret)
    assert not services and not found_secrets, f"left behind: services {services}, secrets {found_secrets}"


@pytest.fixture(scope="module")
def expected():
    return sequential_wordcount(corpus_files())


@pytest.mark.swarm
@pytest.mark.docker
def test_wordcount_on_swarm_equals_sequential_count(tmp_path, expected, clean_swarm):
    spec = make_spec(tmp_path, WORDCOUNT, corpus_files(), backend="swarm", workers=4,
                     chunk_size=512 << 10, reducers=3)
    final = run_job(spec)
    assert spec.output_path.read_text(encoding="utf-8") == expected
    assert final.status == "succeeded" and final.map.done == final.map.total
    names = {row.name for row in final.workers}
    assert len(names) == 4 and all(re.fullmatch(r"worker-[1-4]\.\w{5}", n) for n in names), names


# Its reduce phase waits (up to 2 minutes) for the test's word: the job must not end before
# Swarm's new tasks have come up in the dead workers' slots, however slowly a loaded machine
# starts their containers.
GATED_REDUCE = SLOW + REDIS_URL + """
import redis


class GatedReducer(SlowReducer):
    def setup(self):
        super().setup()
        r = redis.Redis.from_url(redis_url())
        deadline = time.time() + 120
        while not r.exists("test:release") and time.time() < deadline:
            time.sleep(0.2)
"""


class ReleaseWhenReplaced:
    """A run's on_snapshot: once the view shows both dead workers replaced and their new
    tasks' rows, set test:release in the run's Redis (reached as `mrctl status` does)."""

    def __init__(self, docker_host) -> None:
        self.docker_host, self.released = docker_host, False

    def __call__(self, snap) -> None:
        from mrctl.backends.fleet import published_redis, redis_url
        from mrctl.broker import Broker

        states = [row.state for row in snap.workers]
        if self.released or states.count("replaced") < 2 or len(states) < 5:
            return
        redis = published_redis(self.docker_host.containers({"mrctl.job-id": snap.job_id}))
        if redis is not None and (url := redis_url(redis)):
            broker = Broker(url)
            try:
                broker.r.set("test:release", 1)
                self.released = True
            finally:
                broker.close()


@pytest.mark.swarm
@pytest.mark.docker
def test_an_encrypted_overlay_on_request(tmp_path, clean_swarm):
    """--encrypted-overlay: the cluster's overlay is made with `encrypted` (IPsec between nodes;
    on one node its traffic never leaves the host, so what is checked is the network the
    services ran on), and the count is exact over it."""
    book = corpus_files()[:1]
    spec = make_spec(tmp_path, WORDCOUNT, book, backend="swarm", workers=2)
    options: dict[str, dict] = {}

    def seen(snap) -> None:
        for net in clean_swarm.client.networks.list(filters={"label": f"mrctl.job-id={snap.job_id}"}):
            if net.attrs.get("Driver") == "overlay":
                options[net.name] = net.attrs.get("Options") or {}

    final = run_job(spec, RunOptions(encrypted_overlay=True), on_snapshot=seen)
    assert spec.output_path.read_text(encoding="utf-8") == sequential_wordcount(book) and final.status == "succeeded"
    assert options and all("encrypted" in o for o in options.values()), options
    local = _mrctl("run", "jobspecs/wordcount.yaml", "--backend", "local", "--encrypted-overlay",
                   "--output", str(tmp_path / "never.json"), check=False)
    assert local.returncode == 2 and "--encrypted-overlay is for the swarm backend" in local.stderr, local.stderr
    assert not (tmp_path / "never.json").exists()


@pytest.mark.swarm
@pytest.mark.docker
def test_killed_worker_tasks_are_rescheduled_and_output_is_exact(tmp_path, expected, clean_swarm):
    """Chaos kills busy workers' task containers; Swarm starts new tasks in their slots, the
    master requeues what they held, and the output is still exact."""
    spec = make_spec(tmp_path, GATED_REDUCE, corpus_files(), mapper="SlowMapper", reducer="GatedReducer",
                     backend="swarm", workers=3, chunk_size=256 << 10, reducers=3)
    release = ReleaseWhenReplaced(clean_swarm)
    final = run_job(spec, RunOptions(chaos=ChaosPlan(kills=2, every_s=1.0, seed=7)), on_snapshot=release)
    assert release.released, "the view never showed two replaced workers and their new tasks"
    assert spec.output_path.read_text(encoding="utf-8") == expected
    replaced = [e.message for e in final.events if e.kind == "replaced"]
    assert len(replaced) >= 2, final.events
    # each dead worker's slot got a new task, with a new name
    assert all(re.match(r"worker-(\d+)\.\w+ .*; started (worker-\1\.\w+|a new task in slot \1 )", m)
               for m in replaced), replaced
    # and a rescheduled task's worker is a new name in the views, next to the dead one's
    rows = {row.name: row.state for row in final.workers}
    assert sum(state == "replaced" for state in rows.values()) >= 2 and len(rows) >= 5, rows
    assert all(re.fullmatch(r"worker-\d\.[0-9a-f]{5}", name) for name in rows), rows


@pytest.mark.swarm
@pytest.mark.docker
def test_failed_start_on_swarm_leaves_nothing_and_shows_redis_logs(tmp_path, clean_swarm):
    spec = make_spec(tmp_path, WORDCOUNT, corpus_files()[:1], backend="swarm", workers=2)
    with pytest.raises(InfraError) as info:
        run_job(spec, RunOptions(redis_memory="not-a-size"))
    assert "Redis task" in str(info.value) and "maxmemory" in str(info.value)
    assert not spec.output_path.exists()
    # clean_swarm and clean_docker check that services, secrets, networks and containers are gone


@pytest.mark.swarm
@pytest.mark.docker
def test_keep_then_status_logs_and_down_on_swarm(tmp_path, swarm, clean_swarm):
    from mrctl.backends import credentials
    from mrctl.dockerapi import swarm as dockerswarm

    out = tmp_path / "wc.json"
    book = corpus_files()[0]
    run = _mrctl("run", "jobspecs/wordcount.yaml", "--backend", "swarm", "--workers", "2", "--keep",
                 "--plain", "--input", str(book), "--output", str(out))
    assert out.read_text(encoding="utf-8") == sequential_wordcount([book])
    cid = re.search(r"starting cluster (\w+)", run.stderr).group(1)
    cluster = {c["cluster"]: c for c in json.loads(_mrctl("status", "--json").stdout)}[cid]
    assert cluster["state"] == "succeeded" and cluster["map_done"] == cluster["map_total"] > 0
    workers = sorted(w["name"] for w in cluster["workers"])
    assert [w.split(".")[0] for w in workers] == ["worker-1", "worker-2"]
    assert {"forward", "redis"} <= {name for name, _ in cluster["containers"]}

    logs = _mrctl("logs", "worker-1", "--job", cid).stdout + _mrctl("logs", "worker-2", "--job", cid).stdout
    assert "task m:0 attempt 1 start" in logs
    assert f"worker {workers[0]} ready" in _mrctl("logs", workers[0], "--job", cid).stdout  # that task only
    assert "Ready to accept connections" in _mrctl("logs", "redis", "--job", cid).stdout
    missing = _mrctl("logs", "worker-9", "--job", cid, check=False)
    assert missing.returncode == 2 and "worker-1" in missing.stderr

    assert dockerswarm.services(swarm, {"mrctl.cluster": cid}) and dockerswarm.secrets(swarm, {"mrctl.cluster": cid})
    _mrctl("down", "--job", cid)
    assert not dockerswarm.services(swarm, {"mrctl.cluster": cid})
    assert not dockerswarm.secrets(swarm, {"mrctl.cluster": cid})
    assert not swarm.networks({"mrctl.cluster": cid}) and not swarm.containers({"mrctl.cluster": cid})
    assert not credentials.cluster_file(cid).exists()


@pytest.mark.swarm
@pytest.mark.docker
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_the_map_phase_leaves_nothing(tmp_path, swarm, clean_swarm, signum, code):
    from mrctl.dockerapi import swarm as dockerswarm

    (tmp_path / "job.py").write_text(SLOW)
    (tmp_path / "job.yaml").write_text(
        f"name: swarm-sigint\ninput: {json.dumps([str(p) for p in corpus_files()])}\n"
        "job: {module: job.py, mapper: SlowMapper, reducer: SlowReducer}\nworkers: 2\nchunk_size: 64KiB\n")
    proc = subprocess.Popen([sys.executable, "-m", "mrctl", "run", str(tmp_path / "job.yaml"), "--backend",
                             "swarm", "--plain", "-o", str(tmp_path / "out.json")], cwd=ROOT,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any("phase: map" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.1)
        cid = re.search(r"starting cluster (\w+)", "".join(lines)).group(1)
        assert dockerswarm.services(swarm, {"mrctl.cluster": cid})
        proc.send_signal(signum)
        assert proc.wait(120) == code, "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    labels = {"mrctl.cluster": cid}
    assert not dockerswarm.services(swarm, labels)
    assert not dockerswarm.secrets(swarm, labels)
    assert not swarm.networks(labels) and not swarm.containers(labels)
    assert not (tmp_path / "out.json").exists()


PLACED_SPEC = """\
name: placed
input: {inputs}
job: {{module: job.py, mapper: WordMapper, reducer: SumReducer, combiner: SumReducer}}
chunk_size: 256KiB
reducers: 3
backend: swarm
output: out.json
workers:
  count: 2
  placement:
    constraints: [{constraints}]
    preferences: [{{spread: node.labels.mrctl-test-zone}}]
    max_replicas_per_node: {most}
"""


def _placed_spec(tmp_path, constraints: str, most: int):
    from mrctl.spec.jobspec import load_spec

    (tmp_path / "job.py").write_text(WORDCOUNT)
    path = tmp_path / "placed.yaml"
    path.write_text(PLACED_SPEC.format(inputs=json.dumps([str(p) for p in corpus_files()]),
                                       constraints=constraints, most=most))
    return load_spec(path, environ={})


@pytest.mark.swarm
@pytest.mark.docker
def test_workers_are_placed_as_the_spec_says(tmp_path, expected, swarm, clean_swarm):
    """workers.placement reaches the worker service's task template as Swarm's Placement
    (read back from the engine during the run), and a placement this node satisfies runs."""
    from mrctl.dockerapi import swarm as dockerswarm

    spec = _placed_spec(tmp_path, "node.role==manager, node.platform.os != windows", 2)
    seen: list[dict] = []

    def inspect(snap):
        if not seen and snap.phase == "map":
            for name, labels in dockerswarm.services(swarm, MINE):
                if labels.get("mrctl.role") == "worker":
                    seen.append(swarm.client.services.get(name).attrs["Spec"]["TaskTemplate"]["Placement"])

    final = run_job(spec, on_snapshot=inspect)
    assert spec.output_path.read_text(encoding="utf-8") == expected
    assert final.status == "succeeded"
    assert seen == [{"Constraints": ["node.role==manager", "node.platform.os!=windows"],
                     "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.mrctl-test-zone"}}],
                     "MaxReplicas": 2}], seen


@pytest.mark.docker
@pytest.mark.parametrize("constraints, most", [("node.labels.mrctl-test-zone==nowhere", 2),
                                               ("node.role==manager", 1)],
                         ids=["no-node-matches", "two-workers-one-a-node"])
@pytest.mark.swarm
def test_unplaceable_workers_fail_at_once_naming_the_placement(tmp_path, swarm, clean_swarm, constraints, most):
    spec = _placed_spec(tmp_path, constraints, most)
    started = time.monotonic()
    with pytest.raises(InfraError) as info:
        run_job(spec, RunOptions(ready_timeout_s=300))  # failing at once, not by the wait for heartbeats
    message = str(info.value)
    assert info.value.exit_code == 3
    assert "Swarm cannot place" in message and "no suitable node" in message, message
    assert f"constraints {constraints}" in message and f"at most {most} a node" in message, message
    assert time.monotonic() - started < 120  # not the 300 s wait for heartbeats
    assert not spec.output_path.exists()
    # clean_swarm and clean_docker check that services, secrets, networks and containers are gone


def test_placement_is_ignored_with_a_warning_off_swarm(tmp_path, caplog):
    spec = _placed_spec(tmp_path, "node.role==manager", 1)
    inline = dataclasses.replace(spec, backend="inline")
    with caplog.at_level(logging.WARNING, logger="mrctl.master.driver"):
        final = run_job(inline)
    assert final.status == "succeeded"
    assert inline.output_path.read_text(encoding="utf-8") == sequential_wordcount(list(inline.inputs))
    assert any("workers.placement (constraints node.role==manager; spread over node.labels.mrctl-test-zone; "
               "at most 1 a node) is for the swarm backend" in r.getMessage() for r in caplog.records), caplog.text


SEEDS = [int(s) for s in os.environ.get("MRCTL_CRASH_SEEDS", "1,2").split(",")]


@pytest.mark.swarm
@pytest.mark.docker
@pytest.mark.parametrize("seed", SEEDS)
def test_crash_test_on_swarm_output_is_exact(tmp_path, seed, clean_swarm):
    """The crash test (tests/test_faults.py) with workers as Swarm tasks: a crashing worker's
    task ends, Swarm reschedules its slot, and the output is exact."""
    inputs = corpus_files()
    spec = write_crash_spec(tmp_path, seed, inputs, "swarm", name="crash-swarm")
    out = tmp_path / "out.json"
    proc = _mrctl("run", str(spec), "--json", "-o", str(out), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_text(encoding="utf-8") == sequential_wordcount(inputs)
    summary = json.loads(proc.stdout)
    print(f"seed {seed}: exact; {summary['lost']} lost attempts, {summary['retries']} retries")


# -- an engine reached over TCP ------------------------------------------------------------------


def _outside_address() -> str:
    """This machine's address on its first non-loopback interface (the route out)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("198.51.100.1", 9))  # TEST-NET-2; no packet is sent: it only picks the route's source
            address = s.getsockname()[0]
    except OSError:  # no default route: `hostname -I`'s first address
        address = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()[0]
    assert not address.startswith("127."), address
    return address


class EngineOverTcp:
    """tcp://<address>:<port> -> /var/run/docker.sock, for the length of a test. It answers
    only connections from this machine's own address: an engine API without TLS is root."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.server = socket.create_server((address, 0))
        self.url = f"tcp://{address}:{self.server.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, (peer, _) = self.server.accept()
            except OSError:
                return
            if peer != self.address:
                conn.close()
                continue
            engine = socket.socket(socket.AF_UNIX)
            engine.connect("/var/run/docker.sock")
            for a, b in ((conn, engine), (engine, conn)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.server.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def engine_over_tcp():
    engine = EngineOverTcp(_outside_address())
    yield engine
    engine.close()


@pytest.mark.docker
@pytest.mark.parametrize("backend", ["docker", pytest.param("swarm", marks=pytest.mark.swarm)])
def test_remote_engine_publishes_redis_on_its_address(tmp_path, expected, engine_over_tcp, backend, request):
    """With the engine at tcp://<this machine's address>, Redis (or the forwarder) is published on
    that address and only there, so the master, which finished the job, connected there."""
    host = request.getfixturevalue("clean_swarm" if backend == "swarm" else "docker_host")
    request.getfixturevalue("clean_docker")
    spec = make_spec(tmp_path, WORDCOUNT, corpus_files(), backend=backend, workers=2,
                     chunk_size=512 << 10, reducers=2)
    bindings: set[tuple[str, int]] = set()

    def look(snap):
        role = "forward" if backend == "swarm" else "redis"
        for c in host.containers({"mrctl.job-id": snap.job_id, "mrctl.role": role}):
            bindings.update((c.host_ips[p], port) for p, port in c.host_ports.items())

    run_job(spec, RunOptions(docker_host=engine_over_tcp.url), on_snapshot=look)
    assert spec.output_path.read_text(encoding="utf-8") == expected
    assert bindings and {ip for ip, _ in bindings} == {engine_over_tcp.address}, bindings


@pytest.mark.docker
def test_a_warm_cluster_on_a_remote_engine(tmp_path, docker_host, engine_over_tcp, clean_docker):
    """`mrctl up --docker-host URL`, then jobs with `run --cluster NAME --docker-host URL`: the
    cluster is found on that engine, its Redis is published on the engine's address only,
    `status --docker-host` shows it with its two jobs, and `down --docker-host` removes it."""
    import uuid

    name = f"t-{uuid.uuid4().hex[:8]}"
    book = corpus_files()[0]
    _mrctl("up", "--workers", "1", "--name", name, "--docker-host", engine_over_tcp.url)
    try:
        (redis,) = docker_host.containers({"mrctl.cluster": name, "mrctl.role": "redis"})
        assert set(redis.host_ips.values()) == {engine_over_tcp.address}, redis.host_ips
        for i in range(2):  # one job after another, on the one cluster
            out = tmp_path / f"wc{i}.json"
            _mrctl("run", "jobspecs/wordcount.yaml", "--cluster", name, "--docker-host", engine_over_tcp.url,
                   "--input", book, "--output", out, "--plain")
            assert out.read_text(encoding="utf-8") == sequential_wordcount([book])
        there = {c["cluster"]: c for c in json.loads(
            _mrctl("status", "--json", "--docker-host", engine_over_tcp.url).stdout)}
        assert there[name]["warm"] and [r["state"] for r in there[name]["history"]] == ["succeeded"] * 2, there[name]
    finally:
        down = _mrctl("down", "--cluster", name, "--docker-host", engine_over_tcp.url, check=False)
    assert down.returncode == 0, down.stderr
    assert not docker_host.containers({"mrctl.cluster": name}) and not docker_host.networks({"mrctl.cluster": name})


def test_engine_address_of_urls():
    from mrctl.dockerapi.host import engine_address

    assert engine_address(None) == "127.0.0.1"
    assert engine_address("unix:///var/run/docker.sock") == "127.0.0.1"
    assert engine_address("tcp://192.0.2.7:2375") == "192.0.2.7"
    assert engine_address("ssh://me@192.0.2.8:2222") == "192.0.2.8"
    with pytest.raises(InfraError, match="cannot resolve the Docker host"):
        engine_address("tcp://no-such-host.invalid:2375")


@pytest.mark.parametrize("swarm_info, says", [
    ({"LocalNodeState": "inactive"}, "is not part of a swarm"),
    ({"LocalNodeState": "active", "ControlAvailable": False}, "is a swarm worker, not a manager"),
])
def test_swarm_backend_without_a_manager_says_how_to_make_one(swarm_info, says):
    from mrctl.dockerapi import swarm as dockerswarm
    from mrctl.dockerapi.host import DockerHost

    host = mock.create_autospec(DockerHost, instance=True)
    host.client = mock.Mock()
    host.client.info.return_value = {"Swarm": swarm_info}
    with pytest.raises(InfraError) as info:
        dockerswarm.require_manager(host)
    assert says in str(info.value) and "docker swarm init --advertise-addr 127.0.0.1" in str(info.value)
    assert info.value.exit_code == 3


@pytest.mark.docker
def test_images_reach_another_engine_without_a_registry(tmp_path, docker_host, engine_over_tcp, clean_docker):
    """`docker save` from one engine, `docker load` into another (here the same engine reached
    over TCP, with the image's tag removed in between), streamed; an engine that has the
    image already is skipped."""
    from mrctl.dockerapi import swarm as dockerswarm
    from mrctl.images.build import ensure_images, image_state, push_to_engines

    base = image_state(docker_host).base
    copy = f"mrctl-test-{SESSION}:copy"
    docker_host.client.images.get(base).tag(copy)
    try:
        saved = tmp_path / "image.tar"
        with saved.open("wb") as f:
            for chunk in dockerswarm.save_image(docker_host, copy):
                f.write(chunk)
        docker_host.client.images.remove(copy)
        assert docker_host.image_id(copy) is None
        from mrctl.dockerapi.host import DockerHost

        with DockerHost(base_url=engine_over_tcp.url) as remote, saved.open("rb") as f:
            dockerswarm.load_image(remote, iter(lambda: f.read(1 << 20), b""))
        assert docker_host.image_id(copy) == docker_host.image_id(base)
    finally:
        if docker_host.image_id(copy):
            docker_host.client.images.remove(copy)
    messages: list[str] = []
    assert push_to_engines(docker_host, ensure_images(docker_host), [engine_over_tcp.url], messages.append) == []
    assert messages and all("is there already" in m for m in messages), messages


# -- a registry --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory, docker_host):
    """A registry of the session's own (tests/registry.py); the tags pushing made on the engine
    are removed at the end."""
    from registry import Registry, untag

    server = Registry(tmp_path_factory.mktemp("registry"))
    try:
        yield server
    finally:
        server.close()
        untag(docker_host, server.address)


@pytest.mark.swarm
@pytest.mark.docker
def test_wordcount_on_swarm_through_a_registry(tmp_path, expected, registry, clean_swarm):
    """--registry: the images are pushed into the registry, and the services' tasks run them
    as named there, pinned to the digest pushed (as every node would pull them)."""
    from mrctl.images.build import ensure_images, image_state

    spec = make_spec(tmp_path, WORDCOUNT, corpus_files(), backend="swarm", workers=2, chunk_size=512 << 10)
    images: dict[str, set[str]] = {"worker": set(), "redis": set()}

    def seen(snap) -> None:  # the image each service's task containers run
        for role, found in images.items():
            labels = [f"mrctl.job-id={snap.job_id}", f"mrctl.role={role}"]
            found.update(c.attrs["Config"]["Image"]
                         for c in clean_swarm.client.containers.list(filters={"label": labels}))

    final = run_job(spec, RunOptions(registry=registry.address), on_snapshot=seen)
    assert spec.output_path.read_text(encoding="utf-8") == expected and final.status == "succeeded"
    worker = image_state(clean_swarm).worker_current
    name, tag = worker.split(":")
    assert tag in registry.tags(name), registry.tags(name)
    def pinned(ref: str) -> re.Pattern:
        return re.compile(rf"{re.escape(registry.address)}/{re.escape(ref.rsplit('/', 1)[-1])}@sha256:[0-9a-f]{{64}}")

    # the worker tasks ran the registry's pinned image, and so did Redis's
    assert images["worker"] and all(pinned(worker).fullmatch(i) for i in images["worker"]), images
    redis = ensure_images(clean_swarm).redis
    assert images["redis"] and all(pinned(redis).fullmatch(i) for i in images["redis"]), images


@pytest.mark.swarm
@pytest.mark.docker
def test_images_command_pushes_into_a_registry_and_bad_registries_are_refused(tmp_path, registry, swarm):
    from mrctl.images.build import image_state

    pushed = _mrctl("images", "--registry", registry.address)
    worker = image_state(swarm).worker_current
    assert f"pushed: {registry.address}/{worker}" in pushed.stderr, pushed.stderr
    assert worker.split(":")[1] in registry.tags(worker.split(":")[0])
    # not a registry's name: refused before anything is built or started
    bad = _mrctl("run", "jobspecs/wordcount.yaml", "--backend", "swarm", "--registry", "http://127.0.0.1:5000",
                 check=False)
    assert bad.returncode == 2 and "expected HOST, HOST:PORT or HOST:PORT/PATH" in bad.stderr, bad.stderr
    other = _mrctl("run", "jobspecs/wordcount.yaml", "--backend", "local", "--registry", registry.address,
                   "--output", str(tmp_path / "never.json"), check=False)
    assert other.returncode == 2 and "is for the swarm backend" in other.stderr and "local" in other.stderr
    assert not (tmp_path / "never.json").exists() and "Traceback" not in other.stderr
    # a registry that does not answer: exit 3, saying which push failed
    from registry import untag

    closed = f"127.0.0.1:{free_port()}"
    try:
        failed = _mrctl("images", "--registry", closed, check=False)
    finally:
        left = untag(swarm, closed)
    assert failed.returncode == 3 and f"as {closed}/mrctl-worker" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    assert not left, f"a failed push left its tag: {left}"


@pytest.mark.parametrize("name, fine", [
    ("127.0.0.1:5000", True), ("localhost", True), ("localhost:5000/team/ml", True),
    ("registry.example.org", True), ("Registry.Example.org/me/a__b/c--d", True), ("[::1]:5000", True),
    ("http://127.0.0.1:5000", False), ("nas", False), ("nas/me", False), ("a..b:5000", False),
    ("host:99999", False), ("host:5000/Upper", False), ("host:5000/", False), ("", False)])
def test_a_registry_is_named_as_docker_reads_one(name, fine):
    from mrctl.errors import SpecError
    from mrctl.images.registries import check_registry

    if fine:
        assert check_registry(name) == name
    else:
        with pytest.raises(SpecError, match="--registry"):
            check_registry(name)
