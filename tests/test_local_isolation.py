"""The local backend's Redis is reachable only by this user (issue 11, item 9).

A TCP port on 127.0.0.1, however random, can be taken by any local process between the moment
mrctl picks it and the moment redis-server binds it: that process then receives the job's code
and decides its output. The local cluster therefore listens on a unix socket inside a private
0700 directory and on no TCP port at all. These tests look at the real redis-server of a real
run, through /proc, while the job is running.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import redis
from conftest import corpus_files, sequential_wordcount
from jobs import WORDCOUNT, make_spec
from procs import children_of

from mrctl.master.driver import run_job

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _listening_tcp_inodes() -> set[str]:
    """Inodes of every listening TCP socket on the host, IPv4 and IPv6."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == LISTEN:
                inodes.add(cols[9])
    return inodes


def _worker_url(children: dict[int, str]) -> str:
    worker = next(pid for pid, cmd in children.items() if "-m mrctl.worker" in cmd)
    env = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    return next(v.split(b"=", 1)[1].decode() for v in env if v.startswith(b"MRCTL_REDIS_URL="))


@pytest.mark.slow
def test_local_redis_listens_on_no_tcp_port_only_on_a_private_unix_socket(tmp_path):
    seen: dict[str, object] = {}

    def inspect(snap):
        if seen or not snap.workers:  # once, as soon as the cluster is up
            return
        children = {pid: cmd for pid, (_, cmd) in children_of(os.getpid()).items()}
        fixture = os.environ.get("MRCTL_TEST_REDIS_PID")  # the session's own protocol-test Redis
        server = next(pid for pid, cmd in children.items() if "redis-server" in cmd and str(pid) != fixture)
        seen["redis child"] = server
        seen["tcp listeners"] = _socket_inodes(server) & _listening_tcp_inodes()
        url = _worker_url(children)
        seen["scheme"] = urlparse(url).scheme
        with redis.Redis.from_url(url) as r:
            seen["port"] = r.config_get("port")["port"]
            seen["server pid"] = r.info("server")["process_id"]
        if seen["scheme"] != "unix":
            return
        path = Path(unquote(urlparse(url).path))
        seen["socket is a socket"] = stat.S_ISSOCK(path.stat().st_mode)
        seen["dir mode"] = stat.S_IMODE(path.parent.stat().st_mode)
        seen["dir owner"] = path.parent.stat().st_uid
        with redis.Redis(unix_socket_path=str(path)) as anonymous:
            try:
                anonymous.get("x")
            except redis.exceptions.AuthenticationError:
                seen["password required"] = True

    data = corpus_files()[:2]
    spec = make_spec(tmp_path, WORDCOUNT, data, workers=2, chunk_size=64 << 10, reducers=2)
    final = run_job(spec, on_snapshot=inspect)
    assert final.status == "succeeded"
    assert spec.output_path.read_text(encoding="utf-8") == sequential_wordcount(data)
    assert seen["tcp listeners"] == set(), "redis-server listens on a TCP port"
    assert seen["port"] == "0"
    assert seen["scheme"] == "unix"
    assert seen["socket is a socket"] and seen["password required"]
    assert seen["dir mode"] == 0o700 and seen["dir owner"] == os.getuid()
    assert seen["server pid"] == seen["redis child"]  # the server answering is our child
