"""Shared fixtures: a real redis-server, corpus helpers, and a leftover check after every test.

Tests that need infrastructure (redis-server, Docker) skip when it is missing on a laptop, but
when MRCTL_REQUIRE_INFRA=1 (set by .ci/run) a missing service is a failure, never a skip.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from mrctl.errors import InfraError

ROOT = Path(__file__).resolve().parent.parent
# The eight Gutenberg books beside the checkout, or wherever MRCTL_CORPUS points; without
# them, corpus_files() builds a stand-in (see below).
CORPUS = Path(os.environ.get("MRCTL_CORPUS") or ROOT.parent / "shared" / "corpus" / "gutenberg")


def require_infra(what: str) -> None:
    """Skip for a missing service, or fail when CI demands every infrastructure test run."""
    if os.environ.get("MRCTL_REQUIRE_INFRA") == "1":
        pytest.fail(f"{what} is required (MRCTL_REQUIRE_INFRA=1) but unavailable")
    pytest.skip(f"{what} unavailable")


def corpus_files() -> list[Path]:
    """The Gutenberg books; in a checkout without them, a stand-in built from real text."""
    files = sorted(CORPUS.glob("*.txt"))
    if not files:
        if os.environ.get("MRCTL_CORPUS"):
            pytest.fail(f"MRCTL_CORPUS={CORPUS} holds no .txt files")
        files = _standin_corpus()
    return files


_STANDIN: list[Path] = []


def _standin_corpus(files: int = 8, size: int = 400_000) -> list[Path]:
    """Eight ~400 kB files of real text (the Python standard library's sources, in sorted
    order, plus the repo's sample with non-ASCII words), for clones without ../shared."""
    if not _STANDIN:
        import atexit
        import sysconfig

        folder = Path(tempfile.mkdtemp(prefix="mrctl-corpus-"))
        atexit.register(shutil.rmtree, folder, True)
        sources = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
        text = (ROOT / "jobspecs" / "data" / "cafe.txt").read_text(encoding="utf-8")
        text += "".join(p.read_text(encoding="utf-8", errors="replace") for p in sources[:200])
        for i in range(files):
            path = folder / f"standin-{i}.txt"
            path.write_text(text[i * size:(i + 1) * size], encoding="utf-8")
            _STANDIN.append(path)
    return _STANDIN


def sequential_wordcount(paths: list[Path]) -> str:
    """The independent reference: a plain loop over the files, lowercased runs of letters."""
    counts: collections.Counter[str] = collections.Counter()
    word = re.compile(r"[^\W\d_]+")
    for path in paths:
        with open(path, encoding="utf-8", errors="replace", newline=None) as f:
            for line in f:
                counts.update(w.lower() for w in word.findall(line))
    return json.dumps(dict(sorted(counts.items())), ensure_ascii=False) + "\n"


@pytest.fixture(scope="session")
def redis_url():
    """A private redis-server for protocol tests (flushed by the `broker` fixture)."""
    exe = shutil.which("redis-server")
    if exe is None:
        require_infra("redis-server")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    from mrctl.broker import Broker

    b = Broker(url, retries=0)
    deadline = time.monotonic() + 10
    while not b.ping():
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    b.close()
    os.environ["MRCTL_TEST_REDIS_PID"] = str(proc.pid)
    yield url
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def broker(redis_url):
    from mrctl.broker import Broker

    b = Broker(redis_url, retries=0)
    b.r.flushall()
    yield b
    b.close()


def _stray_processes() -> list[str]:
    """mrctl workers anywhere, and redis-servers started by this test process (but the fixture's)."""
    keep = os.environ.get("MRCTL_TEST_REDIS_PID")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == keep:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.split(") ", 1)[-1].split()[:2]
        if state == "Z":
            continue  # a zombie already dead, waiting to be reaped
        ours = int(ppid) == os.getpid()
        if "-m mrctl worker" in cmd or (ours and "redis-server" in cmd):
            found.append(f"{entry.name}: {cmd.strip()}")
    return found


@pytest.fixture(autouse=True)
def no_leftovers():
    """Every test must leave no worker process, stray redis-server or temp file behind."""
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("mrctl-local-*"))
    yield
    deadline = time.monotonic() + 5
    while (strays := _stray_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not strays, f"processes left running: {strays}"
    left = set(tmp.glob("mrctl-local-*")) - before
    assert not left, f"temp dirs left behind: {left}"


@pytest.fixture(scope="session")
def docker_host():
    try:
        from mrctl.dockerhost import DockerHost

        host = DockerHost()
    except InfraError:
        require_infra("Docker")
    from mrctl.images import ensure_images

    ensure_images(host)  # built once per machine; later runs find them
    yield host
    host.close()


@pytest.fixture
def clean_docker(docker_host):
    """After the test: no container or network with mrctl's label may remain."""
    yield
    containers = docker_host.containers({"mrctl.cluster": ""})
    networks = docker_host.networks({"mrctl.cluster": ""})
    for c in containers:  # clean up so one failure does not cascade, then fail
        docker_host.remove_container(c.id)
    for name, _ in networks:
        docker_host.remove_network(name)
    assert not containers and not networks, f"left behind: {[c.name for c in containers]} {networks}"
