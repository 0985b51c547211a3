"""Secrets and containment of a docker cluster (issue 11, items 10 and 11), with real containers
where they are about containers: the Redis password shows in no `docker inspect`, command line
or environment, only in the user's 0600 state file; workers have no route out of their network
(not to the internet, not to the host's own services); Redis and workers run with read-only
root filesystems and pids/memory limits; teardown leaves no network, volume or state file.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import socket
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, corpus_files, sequential_wordcount
from jobs import REDIS_URL, SLOW, make_spec

from mrctl.backends import credentials
from mrctl.backends.docker import (
    REDIS_PIDS_LIMIT,
    WORKER_MEMORY_FLOOR,
    WORKER_MEMORY_SHARE,
    WORKER_PIDS_LIMIT,
    DockerCluster,
    network_name,
    publish_network_name,
)
from mrctl.backends.redis_config import container_memory_limit, memory_bytes, redis_conf
from mrctl.errors import SpecError
from mrctl.master.driver import RunOptions, run_job
from mrctl.spec.jobspec import WorkerLimits


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory, monkeypatch):
    """A private state directory, inherited by the `mrctl` processes the tests start."""
    home = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


# -- no Docker ----------------------------------------------------------------------------------

def test_state_file_is_0600_in_a_0700_directory_and_forgotten(state_home):
    saved = os.umask(0o022)  # a usual umask would make the directory 0755
    try:
        path = credentials.save("c0ffee00", "job-1", "0123abcd")
    finally:
        os.umask(saved)
    assert path == state_home / "mrctl" / "clusters" / "c0ffee00.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert credentials.redis_password("c0ffee00") == "0123abcd"
    assert [p.name for p in path.parent.iterdir()] == ["c0ffee00.json"]  # no temp file left
    credentials.forget("c0ffee00")
    credentials.forget("c0ffee00")  # gone already is fine
    assert credentials.redis_password("c0ffee00") is None


def test_relative_xdg_state_home_is_ignored(monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")
    assert credentials.state_dir() == Path.home() / ".local" / "state" / "mrctl"


def test_redis_memory_notation_and_container_limit():
    assert memory_bytes("1gb") == 2**30 and memory_bytes("1g") == 10**9
    assert memory_bytes("512MB") == 512 * 2**20 and memory_bytes("123") == 123
    assert memory_bytes("not-a-size") is None and memory_bytes("12 tb") is None
    assert container_memory_limit("1gb") == 2**30 + 2**29  # half again as headroom
    assert container_memory_limit("8mb") == 8 * 2**20 + 64 * 2**20  # at least 64 MiB headroom
    assert container_memory_limit("0") is None  # Redis's "unlimited"


def test_redis_conf_has_the_password_once_and_refuses_injected_lines():
    conf = redis_conf("deadbeef", "256mb", workdir="/tmp")
    assert conf.count("deadbeef") == 1 and "maxmemory 256mb" in conf
    assert "maxmemory-policy noeviction" in conf and "-migrate" in conf and "-replicaof" in conf
    with pytest.raises(SpecError, match="--redis-memory"):
        redis_conf("deadbeef", "1gb\nuser default on nopass", workdir="/tmp")


def test_worker_limits_default_and_the_spec_overrides(tmp_path):
    spec = make_spec(tmp_path, "", [], backend="docker", workers=4)
    cluster = DockerCluster(spec, "job")
    cluster._memory_total = 16 * 2**30
    assert cluster._worker_limits() == {"pids_limit": WORKER_PIDS_LIMIT, "mem_limit": 3 * 2**30}
    cluster._memory_total = 2**30
    assert cluster._worker_limits()["mem_limit"] == WORKER_MEMORY_FLOOR
    limited = make_spec(tmp_path, "", [], backend="docker", limits=WorkerLimits(cpus=0.5, memory="300m", pids=99))
    assert DockerCluster(limited, "job")._worker_limits() == {
        "pids_limit": 99, "nano_cpus": 500_000_000, "mem_limit": "300m"}


def test_worker_needs_a_readable_url_file_or_a_url(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mrctl.cli.main import app

    monkeypatch.delenv("MRCTL_REDIS_URL", raising=False)
    monkeypatch.delenv("MRCTL_REDIS_URL_FILE", raising=False)
    missing = CliRunner().invoke(app, ["worker", "--redis-url-file", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "nope" in missing.output
    neither = CliRunner().invoke(app, ["worker"])
    assert neither.exit_code == 2 and "MRCTL_REDIS_URL_FILE" in neither.output


@pytest.mark.parametrize(("env", "says"), [
    ({"MRCTL_REDIS_URL_FILE": "{tmp}/nope"}, "nope (--redis-url-file, MRCTL_REDIS_URL_FILE): No such file"),
    ({}, "needs the Redis URL"),
    ({"MRCTL_REDIS_URL": "redis://:pw@127.0.0.1:1/0", "MRCTL_PARENT_PID": "abc"}, "MRCTL_PARENT_PID='abc'"),
    ({"MRCTL_REDIS_URL": "redis://:pw@127.0.0.1:1/0", "MRCTL_PARENT_PID": "\u00b2"}, "not a process id"),
])
def test_python_m_mrctl_worker_says_what_is_missing_with_exit_2(tmp_path, env, says):
    """What containers and local clusters run: settings from the environment, the CLI's exit
    codes and one line on stderr, no traceback."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MRCTL_REDIS_URL")}
    given = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    done = subprocess.run([sys.executable, "-P", "-m", "mrctl.worker"], env={**clean, **given},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("mrctl: error: ") and says in done.stderr and "Traceback" not in done.stderr


# -- real containers ----------------------------------------------------------------------------

def _cluster_of(host, job_id: str) -> str | None:
    found = host.containers({"mrctl.job-id": job_id})
    return found[0].labels["mrctl.cluster"] if found else None


def _processes() -> dict[str, bytes]:
    """pid -> its command line and environment, for every process this user can read."""
    seen = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                seen[entry.name] = (entry / "cmdline").read_bytes() + b"\n" + (entry / "environ").read_bytes()
            except OSError:
                continue
    return seen


def _mrctl_status() -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "mrctl", "status", "--json"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
def test_password_shows_nowhere_but_the_state_file(tmp_path, docker_host, state_home):
    """While a job runs: no `docker inspect` of its containers, networks or volumes, no command
    line or environment on the host, no `ps` line holds the password; the state file is 0600
    and `mrctl status --json` from another process reads the cluster with it."""
    books = corpus_files()[:2]
    spec = make_spec(tmp_path, SLOW, books, mapper="SlowMapper", backend="docker", workers=2,
                     chunk_size=64 << 10, reducers=2)
    seen: dict = {}

    def check(snap):
        cid = _cluster_of(docker_host, snap.job_id)
        if seen or cid is None or snap.phase != "map":
            return
        seen["cluster"] = cid
        password = credentials.redis_password(cid)
        assert password and len(password) == 32
        path = credentials.cluster_file(cid)
        assert path.parent == state_home / "mrctl" / "clusters"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        api = docker_host.client.api
        inspected = [api.inspect_container(c.id) for c in docker_host.containers({"mrctl.cluster": cid})]
        inspected += [api.inspect_network(n) for n, _ in docker_host.networks({"mrctl.cluster": cid})]
        inspected += [api.inspect_volume(v) for v in docker_host.volumes({"mrctl.cluster": cid})]
        assert len(inspected) == 3 + 2 + 3  # redis + 2 workers, 2 networks, a secrets volume each
        for attrs in inspected:
            assert password not in json.dumps(attrs), attrs.get("Name")
        redis = next(a for a in inspected if a.get("Name", "").endswith("-redis"))
        assert redis["Config"]["Cmd"] == ["redis-server", "/run/mrctl/redis.conf"]
        worker = next(a for a in inspected if a.get("Name", "").endswith("-worker-1"))
        assert "MRCTL_REDIS_URL_FILE=/run/mrctl/redis-url" in worker["Config"]["Env"]
        processes = _processes()
        assert sum(b"redis-server" in p for p in processes.values()) >= 1  # container processes
        assert sum(b"-m\0mrctl.worker" in p for p in processes.values()) >= 2  # are visible here
        leaks = [pid for pid, p in processes.items() if password.encode() in p]
        assert not leaks, [processes[pid][:300] for pid in leaks]
        ps = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
        assert "redis-server" in ps and password not in ps
        (status,) = [s for s in _mrctl_status() if s["cluster"] == cid]
        assert status["note"] is None and status["state"] == "running", status
        assert {w["name"] for w in status["workers"]} == {"worker-1", "worker-2"}

    final = run_job(spec, on_snapshot=check)
    assert seen, "the job ended before it could be inspected"
    assert spec.output_path.read_text(encoding="utf-8") == sequential_wordcount(books)
    assert final.status == "succeeded"
    assert not credentials.cluster_file(seen["cluster"]).exists()


REACH = REDIS_URL + '''
import socket
from urllib.parse import urlsplit
from mrctl import Mapper, Reducer


class ReachMapper(Mapper):
    """Each line is "host port" (or "redis"): try to connect, yield what happened."""

    def map(self, line):
        if line == "redis":
            url = urlsplit(redis_url())
            target = (url.hostname, url.port)
        else:
            host, port = line.split()
            target = (host, int(port))
        try:
            socket.create_connection(target, timeout=6).close()
            yield line, "connected"
        except OSError as exc:
            yield line, f"{type(exc).__name__}: {exc}"


class FirstReducer(Reducer):
    def reduce(self, key, values):
        return sorted(values)[0]
'''


def _host_addresses() -> list[str]:
    """The host's own addresses: on its default route, and docker0's when it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
        found = [s.getsockname()[0]]
        try:  # SIOCGIFADDR
            found.append(socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", b"docker0"))[20:24]))
        except OSError:
            pass
    return found


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
def test_workers_reach_redis_only_and_everything_is_limited(tmp_path, docker_host):
    """A worker reaches Redis but not the internet, not a name server, and not a service
    listening on every address of the host; Redis and workers have read-only root
    filesystems, pids and memory limits; Redis refuses the commands that would make it
    connect out; teardown leaves no network or volume."""
    with socket.create_server(("0.0.0.0", 0)) as listener:  # a service of the host's, on every address
        port = listener.getsockname()[1]
        addresses = _host_addresses()
        for address in addresses:  # the host itself reaches it on each of them
            socket.create_connection((address, port), timeout=2).close()
        targets = ["redis", "1.1.1.1 53", "deb.debian.org 80", *(f"{a} {port}" for a in addresses)]
        data = tmp_path / "targets.txt"
        data.write_text("\n".join(targets) + "\n")
        spec = make_spec(tmp_path, REACH, [data], mapper="ReachMapper", reducer="FirstReducer",
                         combiner=None, backend="docker", workers=2, chunk_size=8, reducers=1)
        seen: dict = {}

        def inspect(snap):
            cid = _cluster_of(docker_host, snap.job_id)
            if not seen and cid and snap.phase == "map":
                seen["cluster"] = cid
                seen.update(_inspect_cluster(docker_host, cid))

        final = run_job(spec, RunOptions(redis_memory="256mb"), on_snapshot=inspect)
    result = json.loads(spec.output_path.read_text())
    assert result["redis"] == "connected", result  # the failures below are not a broken network
    # The workers' subnet holds none of the host's addresses: were docker0's 172.17.0.1 in it,
    # the host would answer for it on the bridge (one CI engine handed out such a subnet).
    (pool,) = seen["networks"][network_name(seen["cluster"])]["IPAM"]["Config"]
    subnet = ipaddress.ip_network(pool["Subnet"])
    assert not [a for a in addresses if ipaddress.ip_address(a) in subnet], (subnet, addresses)
    for target in targets[1:]:
        assert any(why in result[target] for why in (
            "No route to host", "Network is unreachable", "timed out", "name resolution",
            "Name or service not known")), (target, result[target], subnet)
    assert final.status == "succeeded"

    redis, workers, networks = seen["redis"], seen["workers"], seen["networks"]
    assert redis["HostConfig"]["ReadonlyRootfs"] and redis["HostConfig"]["PidsLimit"] == REDIS_PIDS_LIMIT
    assert redis["HostConfig"]["Memory"] == container_memory_limit("256mb")
    assert redis["HostConfig"]["CapDrop"] == ["ALL"] and redis["Config"]["User"] == "65534:65534"
    assert set(redis["NetworkSettings"]["Networks"]) == {network_name(seen["cluster"]),
                                                         publish_network_name(seen["cluster"])}
    assert {b["HostIp"] for b in redis["NetworkSettings"]["Ports"]["6379/tcp"]} == {"127.0.0.1"}
    default_memory = max(WORKER_MEMORY_FLOOR, int(docker_host.memory_total() * WORKER_MEMORY_SHARE) // 2)
    for w in workers:
        assert w["HostConfig"]["ReadonlyRootfs"] and w["HostConfig"]["PidsLimit"] == WORKER_PIDS_LIMIT
        assert w["HostConfig"]["Memory"] == default_memory
        assert set(w["NetworkSettings"]["Networks"]) == {network_name(seen["cluster"])}
    internal, publish = networks[network_name(seen["cluster"])], networks[publish_network_name(seen["cluster"])]
    assert internal["Internal"] and internal["Options"]["com.docker.network.bridge.inhibit_ipv4"] == "true"
    assert not publish["Internal"] and not publish["Containers"].keys() - {redis["Id"]}
    assert all("NoPermission" in answer for answer in seen["denied"].values()), seen["denied"]

    cid = seen["cluster"]
    assert not docker_host.networks({"mrctl.cluster": cid})
    assert not docker_host.volumes({"mrctl.cluster": cid})
    assert not docker_host.containers({"mrctl.cluster": cid})


def _inspect_cluster(host, cid: str) -> dict:
    from mrctl.backends.fleet import redis_url
    from mrctl.broker import Broker

    api = host.client.api
    containers = {c.name: api.inspect_container(c.id) for c in host.containers({"mrctl.cluster": cid})}
    redis = next(a for n, a in containers.items() if n.endswith("-redis"))
    broker = Broker(redis_url(next(c for c in host.containers({"mrctl.cluster": cid, "mrctl.role": "redis"}))))
    denied = {}
    for command in (["CONFIG", "GET", "maxmemory"], ["REPLICAOF", "192.0.2.1", "6379"],
                    ["MIGRATE", "192.0.2.1", "6379", "k", "0", "1000"], ["BGSAVE"]):
        try:
            denied[command[0]] = repr(broker.r.execute_command(*command))
        except Exception as exc:  # noqa: BLE001 - the refusal is the point
            denied[command[0]] = type(exc).__name__
    broker.close()
    return {"redis": redis, "denied": denied,
            "workers": [a for n, a in containers.items() if "-worker-" in n],
            "networks": {n: api.inspect_network(n) for n, _ in host.networks({"mrctl.cluster": cid})}}


# -- the workers' subnet -------------------------------------------------------------------------

def test_subnet_candidates_skip_every_overlap_and_wrap_round():
    from mrctl.backends import subnets

    pool = ipaddress.ip_network("10.9.0.0/22")  # four /24s
    avoid = [ipaddress.ip_network("10.9.1.128/25"), ipaddress.ip_network("172.17.0.0/16")]
    got = list(subnets.candidates(avoid, pool=pool, start=2))
    expected = [ipaddress.ip_network(f"10.9.{i}.0/24") for i in (2, 3, 0)]  # .1 holds an avoided /25
    assert got == expected
    assert list(subnets.candidates([ipaddress.ip_network("10.8.0.0/15")], pool=pool)) == []


def test_local_networks_hold_the_hosts_own_addresses():
    from mrctl.backends import subnets

    found = subnets.local_networks()
    for address in [*_host_addresses(), "127.0.0.1"]:
        assert any(ipaddress.ip_address(address) in n for n in found), (address, found)


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
def test_a_taken_subnet_is_told_apart_from_other_network_errors(docker_host):
    from conftest import SESSION, SESSION_LABEL

    from mrctl.dockerapi.host import SubnetTaken
    from mrctl.errors import InfraError

    labels = {SESSION_LABEL: SESSION}
    name = f"mrctl-test-subnet-{SESSION[:8]}"
    docker_host.create_network(name, labels, internal=True, subnet="10.213.255.0/24")
    try:
        assert "10.213.255.0/24" in docker_host.network_subnets()
        with pytest.raises(SubnetTaken):
            docker_host.create_network(name + "-b", labels, internal=True, subnet="10.213.255.128/25")
        with pytest.raises(InfraError) as info:  # a duplicate name is not a taken subnet
            docker_host.create_network(name, labels, internal=True, subnet="10.213.254.0/24")
        assert not isinstance(info.value, SubnetTaken)
    finally:
        docker_host.remove_network(name)
