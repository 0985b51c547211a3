"""docker-py is imported on first use, and a first use cut short (a Ctrl-C, another thread) does
not leave it half-loaded: CI once saw "module 'requests' has no attribute 'Session'" after a
SIGINT while a cluster started. Each check runs in a fresh interpreter, where nothing has
imported docker-py yet."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def fresh_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_importing_the_docker_api_does_not_import_docker_py():
    out = fresh_python("""
        import sys
        import mrctl.dockerapi.host, mrctl.dockerapi.swarm
        print(sorted(m for m in ("docker", "requests", "urllib3") if m in sys.modules))
    """)
    assert out == "[]"


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
                    raise KeyboardInterrupt
                return None

        sys.meta_path.insert(0, Interrupt())
        from mrctl.dockerapi import host
        try:
            host.docker.from_env
        except KeyboardInterrupt:
            print("interrupted")
        print(Interrupt.fired, host.requests.Session.__name__, callable(host.docker.from_env))
    """)
    assert out.splitlines() == ["interrupted", "True Session True"]


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
