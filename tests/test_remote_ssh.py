"""ssh:// Docker hosts (--docker-host, DOCKER_HOST): a real sshd of the session's own (tests/sshd.py)
in front of this machine's engine, the machine's own ssh client, docker-py's ssh transport."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess

import pytest
from conftest import corpus_files, sequential_wordcount
from procs import run_mrctl as _mrctl
from sshd import SshServer

from mrctl.errors import InfraError


@pytest.fixture(scope="module")
def ssh_engine(tmp_path_factory):
    server = SshServer(tmp_path_factory.mktemp("sshd"))
    yield server
    server.close()


@pytest.mark.ssh
@pytest.mark.docker
def test_run_status_and_down_through_an_ssh_docker_host(tmp_path, ssh_engine, docker_host, clean_docker):
    """`mrctl run --docker-host ssh://...` starts the cluster through sshd and gives the exact
    count; `mrctl status` and `mrctl down` reach the kept cluster through DOCKER_HOST=ssh://..."""
    env = {**os.environ, "PATH": ssh_engine.path}
    out = tmp_path / "wc.json"
    books = corpus_files()[:3]
    run = _mrctl("run", "jobspecs/wordcount.yaml", "--docker-host", ssh_engine.url, "--workers", "2", "--keep",
                 "--plain", "-o", str(out), *[a for b in books for a in ("--input", str(b))], env=env)
    assert out.read_text(encoding="utf-8") == sequential_wordcount(books)
    cid = re.search(r"starting cluster (\w+)", run.stderr).group(1)
    # the engine was reached through this sshd, on one login: every request shared it (SshMaster)
    assert ssh_engine.logins() == 1, ssh_engine.log()

    via_env = {**env, "DOCKER_HOST": ssh_engine.url}
    status = _mrctl("status", "--json", env=via_env)
    cluster = {c["cluster"]: c for c in json.loads(status.stdout)}[cid]
    assert cluster["state"] == "succeeded"
    assert {"redis", "worker-1", "worker-2"} <= {name for name, _ in cluster["containers"]}
    _mrctl("down", "--job", cid, env=via_env)
    assert not docker_host.containers({"mrctl.cluster": cid}) and not docker_host.networks({"mrctl.cluster": cid})
    assert ssh_engine.logins() == 3, ssh_engine.log()  # one login for each of the three commands
    # each command's shared connection ended with it: no ssh master left running
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    masters = [line for line in processes.splitlines() if " -M -S " in line and f"-p {ssh_engine.port} " in line]
    assert not masters, masters


def test_an_ssh_docker_host_without_paramiko_says_what_to_install(monkeypatch):
    from mrctl.dockerapi.host import DockerHost

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "paramiko" else real(name, *a))
    with pytest.raises(InfraError) as info:
        DockerHost(base_url="ssh://me@192.0.2.8")
    assert info.value.exit_code == 3
    assert "ssh://me@192.0.2.8" in str(info.value) and "pip install 'mrctl[ssh]'" in str(info.value)
