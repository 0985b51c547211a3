"""What a process imports at start: the heavy libraries only where they are used (every mrctl
command and every worker is a new process; the test suite starts hundreds). docker-py is
imported on first use, and a first use cut short (a Ctrl-C, another thread) does not leave it
half-loaded: CI once saw "module 'requests' has no attribute 'Session'" after a SIGINT while a
cluster started. Each check runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fresh_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_importing_the_docker_api_does_not_import_docker_py():
    out = fresh_python("""
        import sys
        import mrctl.dockerapi.host, mrctl.dockerapi.swarm
        print(sorted(m for m in ("docker", "requests", "urllib3") if m in sys.modules))
    """)
    assert out == "[]"


def test_a_plain_run_and_a_worker_import_neither_rich_nor_pydantic_nor_docker_py():
    """--plain, --json and mrctl.run show no live view (rich is the terminal's), a worker
    and the CLI parse flags without pydantic (typer 0.29 imported it), a local run needs no
    Docker."""
    out = fresh_python("""
        import io, sys
        import mrctl, mrctl.api, mrctl.cli.main, mrctl.backends.local, mrctl.worker.loop
        from mrctl.observe.reporters import choose_reporter
        choose_reporter("plain", io.StringIO(), io.StringIO(), {})
        choose_reporter("json", io.StringIO(), io.StringIO(), {})
        choose_reporter(None, io.StringIO(), io.StringIO(), {})  # no terminal: plain
        mrctl.run, mrctl.Mapper, mrctl.read_output
        for argv, code in ((["validate", "jobspecs/wordcount.yaml"], 0),  # an argument, parsed
                           (["worker", "--name", "w", "--burst"], 2)):  # options; no Redis URL: 2
            try:
                mrctl.cli.main.app(argv)
            except SystemExit as exc:
                assert exc.code == code, (argv, exc.code)
        print(sorted(m for m in ("rich", "pydantic", "docker", "requests") if m in sys.modules))
    """)
    assert out.splitlines()[-1] == "[]"


def test_a_first_use_interrupted_mid_import_is_imported_again_whole():
    """KeyboardInterrupt is raised inside requests' own import (as a signal handler would), on
    the first use of docker-py; the next use must find requests and docker whole."""
    out = fresh_python("""
        import sys
        from importlib.abc import MetaPathFinder

        class Interrupt(MetaPathFinder):
            fired = False
            def find_spec(self, name, path=None, target=None):
                if name == "requests.sessions" and not Interrupt.fired:
                    Interrupt.fired = True
                    import fractions  # whole, as another thread's import meanwhile would be
                    raise KeyboardInterrupt
                return None

        sys.meta_path.insert(0, Interrupt())
        from mrctl.dockerapi import host
        try:
            host.docker.from_env
        except KeyboardInterrupt:
            print("interrupted")
        whole = sys.modules["fractions"]
        print(Interrupt.fired, host.requests.Session.__name__, callable(host.docker.from_env))
        import fractions, requests.exceptions
        print(fractions is whole, host.requests.exceptions is requests.exceptions)
    """)
    assert out.splitlines() == ["interrupted", "True Session True", "True True"]


def test_the_stand_in_can_be_copied_and_pickled_without_importing():
    out = fresh_python("""
        import copy, pickle, sys
        from mrctl.dockerapi import OnFirstUse
        stand_in = OnFirstUse("docker")
        copied, unpickled = copy.copy(stand_in), pickle.loads(pickle.dumps(stand_in))
        print("docker" in sys.modules, callable(unpickled.from_env))
    """)
    assert out == "False True"


def test_threads_using_docker_py_first_at_once_all_see_it_whole():
    out = fresh_python("""
        import threading
        from mrctl.dockerapi import host

        seen, start = [], threading.Barrier(8)
        def use():
            start.wait()
            seen.append((host.requests.Session.__name__, host.docker.errors.NotFound.__name__))
        threads = [threading.Thread(target=use) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(len(seen), set(seen))
    """)
    assert out == "8 {('Session', 'NotFound')}"
