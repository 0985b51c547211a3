"""`mrctl doctor`: each check against what the machine really has, a clear verdict and exit code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

from mrctl.errors import InfraError
from mrctl.images import debian


def _doctor(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrctl", "doctor", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})


@pytest.mark.docker
def test_doctor_reports_this_engine_and_says_a_run_would_work(docker_host):
    proc = _doctor("--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ready"] is True
    server_version = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                    capture_output=True, text=True).stdout.strip() if shutil.which(
        "docker") else docker_host.client.version()["Version"]
    assert checks["Docker engine"]["status"] == "ok" and server_version in checks["Docker engine"]["detail"]
    assert "root-equivalent" in checks["Docker access"]["detail"]
    assert checks["registry"]["status"] in ("ok", "note")
    assert checks["base images"]["status"] == "ok"  # the session's docker_host built them
    assert checks["worker image"]["status"] == "ok"
    assert {"Debian mirror", "redis-server (local backend)", "free disk (Docker data)"} <= set(checks)
    free = shutil.disk_usage(ROOT).free / 1e9
    assert f"{free:.0f}" in checks["free disk (cache)"]["detail"] or checks["free disk (cache)"]["status"]


def test_doctor_without_an_engine_fails_with_the_fix_and_no_traceback():
    proc = _doctor(DOCKER_HOST="tcp://127.0.0.1:1")
    assert proc.returncode == 3
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "Docker engine" in proc.stdout and "fail" in proc.stdout and "--backend local" in proc.stdout
    assert "would fail" in proc.stdout


def test_an_unreachable_mirror_is_one_clear_sentence():
    dead = debian.AptSource("http://127.0.0.1:9/debian", "bookworm")
    with pytest.raises(InfraError) as info:
        debian.probe_mirror(dead, timeout_s=2)
    assert str(info.value).startswith("the Debian mirror does not answer (http://127.0.0.1:9/debian/")
    with pytest.raises(InfraError) as info:
        debian.Archive(dead, on_progress=lambda msg: None).packages()
    assert "cannot download http://127.0.0.1:9/debian/dists/bookworm/InRelease" in str(info.value)
