"""Shared fixtures: a real redis-server, corpus helpers, and a leftover check after every test.

Infrastructure is never skipped: a test that needs redis-server gets one (from PATH, or fetched
by mrctl from the host's Debian mirror), and a test marked `docker` fails when no Docker engine
answers. Deselect with `-m "not docker"` to run without Docker; such a run must not start a
container, and the session checks that it did not.

Everything this session starts carries its id: containers and networks a label
(`mrctl.test-session=<id>`, through MRCTL_LABELS), processes the same string in their
environment. Fixtures clean up and complain only about what carries it, so a user's job
running on the same engine survives a test run.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The eight Gutenberg books beside the checkout, or wherever MRCTL_CORPUS points; without
# them, corpus_files() builds a stand-in (see below).
CORPUS = Path(os.environ.get("MRCTL_CORPUS") or ROOT.parent / "shared" / "corpus" / "gutenberg")
SESSION_LABEL = "mrctl.test-session"
SESSION = uuid.uuid4().hex[:10]  # this process's: each pytest-xdist worker has one of its own
# The whole run's: the controller's id, inherited by its xdist workers, so that the end of the
# run can ask the engine about every worker's containers.
RUN_LABEL = "mrctl.test-run"
RUN = os.environ.setdefault("MRCTL_TEST_RUN", SESSION)
LABELS = f"{SESSION_LABEL}={SESSION},{RUN_LABEL}={RUN}"


def pytest_configure(config: pytest.Config) -> None:
    # Inherited by every cluster and process the tests start (see the module docstring).
    os.environ["MRCTL_LABELS"] = LABELS
    config._mrctl_started = time.time()  # type: ignore[attr-defined]
    # A temp dir of the session's own, so that the leftover check sees only the session's
    # temp files, never those of a job running beside the tests. Always beside the first
    # session's (xdist workers', a nested pytest's), not inside it: a local cluster's socket
    # path must stay under 108 bytes.
    base = os.environ.setdefault("MRCTL_TEST_TMP_BASE", tempfile.gettempdir())
    private = Path(tempfile.mkdtemp(prefix=f"mrctl-test-{SESSION}-", dir=base))
    os.environ["TMPDIR"] = tempfile.tempdir = str(private)
    config._mrctl_tmp = private  # type: ignore[attr-defined]
    # Runs record themselves in the history: the session's own, never the user's
    os.environ["MRCTL_HISTORY"] = str(private / "history.sqlite")
    if RUN == SESSION:  # the run's first process, before any other starts
        _compile_mrctl()


def _compile_mrctl() -> None:
    """mrctl's bytecode, written once for the run's thousand-odd processes that import it (the
    CLI, masters, local workers). Python writes it on first import, except where
    PYTHONDONTWRITEBYTECODE is set, as on some CI machines; there every process compiled the
    package from source again (55 ms of a worker's 0.29 s start). compileall writes it whatever
    the setting, and Python still checks each file's source stamp before it uses one."""
    import compileall

    compileall.compile_dir(str(ROOT / "mrctl"), quiet=1)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`pytest -n auto`: two processes per core, at most 8. Most of a test's time is spent
    waiting on containers, subprocesses and Redis; past two per core, the engine and the
    machine's cores are the bottleneck and timings only stretch."""
    return min(8, 2 * (os.cpu_count() or 1))


def pytest_unconfigure(config: pytest.Config) -> None:
    private = getattr(config, "_mrctl_tmp", None)
    if private is not None:
        shutil.rmtree(private, ignore_errors=True)
    if RUN == SESSION:  # the run's first process (the xdist controller): the run's shared files go
        shutil.rmtree(run_shared_dir(create=False), ignore_errors=True)


def run_shared_dir(create: bool = True) -> Path:
    """A folder that every process of this test run shares (xdist's workers and the controller),
    for results worth computing once per run rather than once per process."""
    folder = Path(os.environ.get("MRCTL_TEST_TMP_BASE", tempfile.gettempdir())) / f"mrctl-test-run-{RUN}"
    if create:
        folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def computed_once(key: str, compute: Callable[[], bytes]) -> bytes:
    """`compute()`'s bytes, computed by one process of the run for `key` and read by the others
    (they wait for it under a lock, as mrctl's own cache does)."""
    import fcntl
    import hashlib

    path = run_shared_dir() / hashlib.sha256(key.encode()).hexdigest()[:20]
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(compute())
            tmp.replace(path)
        return path.read_bytes()


# What a test needs, said by its markers (pyproject.toml registers them; the README lists them):
# a test that uses one of these fixtures without the marker fails collection, so that
# `-m "not docker"` (or swarm, browser, ssh) never starts what it deselects.
NEEDS = {
    "docker": {"docker_host", "clean_docker"},
    "swarm": {"swarm", "clean_swarm"},
    "browser": {"browser"},
    "ssh": {"ssh_engine"},
}
# Markers that make a test slow by what they start (an engine's containers, a swarm, a
# browser, an sshd): such a test is `slow` too, and `pytest -m "not slow"` is the edit loop.
STARTS_SLOWLY = ("docker", "swarm", "browser", "ssh", "cargo")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which reads the xdist_group added here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [f"{i.nodeid} (needs the {marker} marker)" for i in items for marker, fixtures in NEEDS.items()
                if fixtures & set(getattr(i, "fixturenames", ())) and not i.get_closest_marker(marker)]
    if unmarked:
        raise pytest.UsageError("tests use fixtures without their markers: " + ", ".join(unmarked))
    for item in items:
        if any(item.get_closest_marker(m) for m in STARTS_SLOWLY):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("swarm"):
            # One engine has one swarm, which the session-scoped fixture makes and leaves: under
            # pytest-xdist (--dist loadgroup), every swarm test runs in the same process.
            item.add_marker(pytest.mark.xdist_group("swarm"))
    # Longest first, so that no long test starts near the end of a parallel run: the swarm's
    # tests (one chain, in one process, about four minutes), then the slow ones, then the rest.
    # A stable sort: within each kind, a module's tests keep their order.
    items.sort(key=lambda i: 0 if i.get_closest_marker("swarm") else 1 if i.get_closest_marker("slow") else 2)


def _check_grouping(config: pytest.Config) -> None:
    """Stop before anything starts when pytest-xdist cannot group the swarm tests (they share
    one swarm): under pytest 9.2 its loadgroup silently stops grouping (pytest-xdist#1386)."""
    import xdist

    version = tuple(int(p) for p in xdist.__version__.split(".")[:2])
    if config.getvalue("dist") == "loadgroup" and pytest.version_tuple[:2] >= (9, 2) and version <= (3, 8):
        raise pytest.UsageError(f"pytest {pytest.__version__} with pytest-xdist {xdist.__version__} does not "
                                "group tests (pytest-xdist#1386): pip install -e '.[test]' gives a pytest that does")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist, the controller makes the run's swarm before any worker starts, and
    leaves it after the last has ended (pytest_sessionfinish): an engine that leaves a swarm
    breaks name resolution on the bridge networks made while it was in one, so the swarm tests'
    own fixture must not leave it while other processes' clusters run."""
    config = session.config
    if _xdist_controller(config):
        _check_grouping(config)
    if not _xdist_controller(config) or not _may_run_swarm_tests(config):
        return
    from mrctl.dockerapi import swarm as dockerswarm
    from mrctl.dockerapi.host import DockerHost
    from mrctl.errors import InfraError

    try:
        with DockerHost(timeout=30) as host:
            if dockerswarm.swarm_state(host).node_state == "inactive":
                dockerswarm.swarm_init(host, "127.0.0.1")
                config._mrctl_swarm_made = True  # type: ignore[attr-defined]
    except InfraError:
        return  # no engine: the swarm tests fail and say so


def _xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def _may_run_swarm_tests(config: pytest.Config) -> bool:
    """Whether the selection can hold a swarm test: its markers pass -m, and the paths given
    include tests/test_swarm.py (or a folder)."""
    from _pytest.mark.expression import Expression

    markexpr = config.option.markexpr
    swarm_marks = {"swarm", "docker", "slow"}
    if markexpr and not Expression.compile(markexpr).evaluate(lambda name: name in swarm_marks):
        return False
    return any("test_swarm" in arg or Path(arg.split("::")[0]).is_dir() for arg in config.args)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave the swarm the controller made; under `-m "not docker"`, check with the engine that
    no container of ours was created."""
    if getattr(session.config, "_mrctl_swarm_made", False):
        from mrctl.dockerapi import swarm as dockerswarm
        from mrctl.dockerapi.host import DockerHost

        with DockerHost(timeout=30) as host:
            dockerswarm.swarm_leave(host)
    markexpr = session.config.option.markexpr or ""
    if "not docker" not in markexpr.replace("  ", " "):
        return
    from mrctl.dockerapi.host import DockerHost
    from mrctl.errors import InfraError

    try:
        with DockerHost(timeout=10) as host:
            made = host.containers_created({RUN_LABEL: RUN}, session.config._mrctl_started)
    except InfraError:
        return  # no engine: nothing can have been started on it
    if made:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\n-m {markexpr!r} started containers: {made}")


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
    """Eight ~400 kB files of real prose, for clones without ../shared: the repo's sample with
    non-ASCII words, the Python reference's help topics (pydoc_data) and the docstrings of the
    standard library (2.3 MB in all, in every Python), the start repeated to fill the last
    file. Prose, not source code: a shuffle keyed by a line's first word must meet no key as
    heavy as "#" is in code (13% of its lines), and the text must not repeat within a chunk,
    or it compresses too well to fill the small Redis of the spill tests."""
    if not _STANDIN:
        import ast
        import atexit
        import sysconfig
        from pydoc_data.topics import topics

        stdlib = Path(sysconfig.get_paths()["stdlib"])
        docs = [(ROOT / "jobspecs" / "data" / "cafe.txt").read_text(encoding="utf-8")]
        docs += [topics[name] for name in sorted(topics)]
        for source in sorted(stdlib.glob("**/*.py")):
            if {"site-packages", "test"} & set(source.relative_to(stdlib).parts):
                continue
            try:
                tree = ast.parse(source.read_bytes())
            except (SyntaxError, ValueError):
                continue
            docs += [doc for node in ast.walk(tree)
                     if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                     and (doc := ast.get_docstring(node))]
        text = "\n".join(docs)
        text *= -(-files * size // len(text))  # enough for every file
        folder = Path(tempfile.mkdtemp(prefix="mrctl-corpus-"))
        atexit.register(shutil.rmtree, folder, True)
        for i in range(files):
            path = folder / f"standin-{i}.txt"
            path.write_text(text[i * size:(i + 1) * size], encoding="utf-8")
            _STANDIN.append(path)
    return _STANDIN


def word_counts(paths: list[Path]) -> collections.Counter[str]:
    """The independent reference: a plain loop over the files, lowercased runs of letters
    (counted once per process for the same files, unchanged: many tests count the books)."""
    stamps = tuple((str(p), (st := os.stat(p)).st_size, st.st_mtime_ns) for p in paths)
    return collections.Counter(_word_counts(stamps))


@functools.cache
def _word_counts(stamps: tuple[tuple[str, int, int], ...]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    word = re.compile(r"[^\W\d_]+")
    for path, _, _ in stamps:
        with open(path, encoding="utf-8", errors="replace", newline=None) as f:
            for line in f:
                counts.update(w.lower() for w in word.findall(line))
    return counts


def sequential_wordcount(paths: list[Path]) -> str:
    """The word count's JSON output, as a plain loop computes it."""
    return json.dumps(dict(sorted(word_counts(paths).items())), ensure_ascii=False) + "\n"


def words_by_count(paths: list[Path]) -> dict[str, list[str]]:
    """Count -> the words that occur that often, sorted: the two-step test job's output, as
    JSON reads it back (keys are strings there)."""
    found: dict[int, list[str]] = collections.defaultdict(list)
    for word, n in word_counts(paths).items():
        found[n].append(word)
    return {str(n): sorted(words) for n, words in found.items()}


@pytest.fixture(scope="session")
def redis_url():
    """A private redis-server for protocol tests (flushed by the `broker` fixture)."""
    from mrctl.backends.redis_server import obtain_redis_server

    server = obtain_redis_server()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([server.path, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            env={**os.environ, **server.env})
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


@pytest.fixture
def lossy(broker, redis_url):
    """A Broker (with retries, as the master's and the workers' are) whose connection goes
    through a proxy that loses the reply of a chosen request once (redis_proxy), and the SHA of
    each Lua script (lua.NAME -> sha) a test may arm it with."""
    import hashlib
    from urllib.parse import urlparse

    from redis_proxy import ReplyDroppingProxy

    from mrctl.broker import Broker, lua

    url = urlparse(redis_url)
    proxy = ReplyDroppingProxy(url.hostname, url.port)
    via = Broker(f"redis://127.0.0.1:{proxy.port}/0", retries=3)
    shas = {name: hashlib.sha1(getattr(lua, name).encode()).hexdigest().encode()
            for name in ("CLAIM", "COMMIT", "ADD_TASK", "ADD_MAP_TASKS", "FEED_PUSH", "FEED_TAKE")}
    for name in shas:  # cached in Redis, so that the dropped reply is the script's, not NOSCRIPT
        broker.r.script_load(getattr(lua, name))
    via.ping()
    yield via, proxy, shas
    via.close()
    proxy.close()


def _ours(pid: str) -> bool:
    """Whether a process carries this session's id in its environment (inherited from us)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"MRCTL_LABELS={LABELS}".encode() in environ.split(b"\0")


def _stray_processes() -> list[str]:
    """mrctl workers, their heartbeat processes and redis-servers started by this session (but
    the fixture's)."""
    keep = os.environ.get("MRCTL_TEST_REDIS_PID")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name in (keep, str(os.getpid())):
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.split(") ", 1)[-1].split()[0] == "Z":
            continue  # a zombie already dead, waiting to be reaped
        mrctl_process = "-m mrctl.worker" in cmd or "mrctl worker" in cmd or "redis-server" in cmd
        if mrctl_process and _ours(entry.name):  # a worker, its heartbeat keeper, a Redis
            found.append(f"{entry.name}: {cmd.strip()}")
    return found


@pytest.fixture(autouse=True)
def root_logging_restored():
    """A test that runs the CLI in-process (CliRunner) leaves the root logger writing to a
    stream closed since: later tests' log lines would then be 'Logging error' tracebacks."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def no_leftovers():
    """Every test must leave no worker process, stray redis-server or temp file behind."""
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("mrctl-local-*")) | set(tmp.glob("mrctl-spill-*"))
    yield
    deadline = time.monotonic() + 5
    while (strays := _stray_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not strays, f"processes left running: {strays}"
    left = (set(tmp.glob("mrctl-local-*")) | set(tmp.glob("mrctl-spill-*"))) - before
    assert not left, f"temp dirs left behind: {left}"


@pytest.fixture(scope="session")
def docker_host():
    from mrctl.dockerapi.host import DockerHost
    from mrctl.errors import InfraError
    from mrctl.images.build import ensure_images

    try:
        host = DockerHost()
    except InfraError as exc:
        pytest.fail(f"this test needs a Docker engine (deselect with -m 'not docker'): {exc}")
    ensure_images(host)  # built once per machine; later runs find them
    yield host
    host.close()


def require_marker(request: pytest.FixtureRequest, marker: str) -> None:
    """Fail a test that reached a fixture of `marker` without the marker (through
    request.getfixturevalue, which collection does not see)."""
    if not request.node.get_closest_marker(marker):
        pytest.fail(f"{request.node.nodeid} uses {request.fixturename} without the {marker} marker")


@pytest.fixture
def clean_docker(request, docker_host):
    """After the test: no container or network of this session may remain (others' are not
    looked at, let alone removed)."""
    require_marker(request, "docker")
    yield
    mine = {SESSION_LABEL: SESSION}
    containers = docker_host.containers(mine)
    networks = docker_host.networks(mine)
    for c in containers:  # clean up so one failure does not cascade, then fail
        docker_host.remove_container(c.id)
    for name, _ in networks:
        docker_host.remove_network(name)
    assert not containers and not networks, f"left behind: {[c.name for c in containers]} {networks}"
