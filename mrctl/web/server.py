"""Serving the page with uvicorn, on a loopback address only: the page can cancel jobs, so it
must never be reachable from another machine (an SSH tunnel is the way to look from elsewhere).
Other users of this machine can reach 127.0.0.1: the URL printed carries the session's token,
and nothing is served without it (mrctl.web.gate).

`mrctl ui` serves in the foreground until Ctrl-C. `mrctl run --ui` serves from a thread of the
run's own process (UiServer), stopped when the run ends: a thread shares the process's fate, so
there is no second process to tear down or leave behind, and nothing to hand over (the page finds
the run through Redis like any other).
"""

from __future__ import annotations

import logging
import secrets
import socket
import sys
import threading
import time
import webbrowser

import uvicorn

from mrctl.errors import InfraError, SpecError
from mrctl.observe.snapshot import JobSnapshot
from mrctl.web.app import create_app
from mrctl.web.gate import url_with_token

log = logging.getLogger(__name__)

DEFAULT_PORT = 8470
START_TIMEOUT_S = 10.0


def check_loopback(host: str) -> str:
    """127.0.0.1 for 127.0.0.1 or localhost, else SpecError (the page answers only to these
    Host names, mrctl.web.app)."""
    if host in ("127.0.0.1", "localhost"):
        return "127.0.0.1"
    raise SpecError(f"--host {host}: mrctl ui serves on a loopback address only (127.0.0.1): its page "
                    "can cancel jobs. To look from another machine, tunnel: ssh -L 8470:127.0.0.1:8470 HOST")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one), bound before uvicorn starts so
    that the URL printed is the real one."""
    host = check_loopback(host)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InfraError(f"cannot serve on {host}:{port}: {exc.strerror}; pick another --port") from None
    sock.listen(64)
    return sock


def url_of(sock: socket.socket, path: str = "/") -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}{path}"


def _server(token: str, app_stopping: threading.Event) -> uvicorn.Server:
    # log_config=None: mrctl's CLI owns logging; the access log would flood a run's output.
    config = uvicorn.Config(create_app(token, app_stopping), log_config=None, access_log=False,
                            log_level="warning", timeout_graceful_shutdown=2, lifespan="off")
    return uvicorn.Server(config)


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, announce=None) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM (uvicorn's own handling); `announce`
    gets the URL to open, with the session's token."""
    sock = bind(host, port)
    stopping = threading.Event()
    token = secrets.token_urlsafe(32)
    server = _server(token, stopping)
    if announce is not None:
        announce(url_with_token(url_of(sock), token))
    try:
        server.run(sockets=[sock])
    finally:
        stopping.set()
        sock.close()


class UiServer:
    """The page served from a thread of this process while a `with` block runs."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = bind(host, port)
        self.stopping = threading.Event()
        self.token = secrets.token_urlsafe(32)
        self.server = _server(self.token, self.stopping)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="mrctl-ui", daemon=True)

    def url(self, path: str = "/") -> str:
        return url_of(self.sock, path)

    def url_with_token(self, path: str = "/") -> str:
        """The URL to open: the browser exchanges its token for the session's cookie."""
        return url_with_token(self.url(path), self.token)

    def __enter__(self) -> UiServer:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.__exit__()
                raise InfraError(f"the web page's server did not start on {self.url()}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()  # live feeds end, so that shutdown does not wait on them
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT_S)
        self.sock.close()


class RunPage:
    """`mrctl run --ui`: the server for one run; says where the run's page is (and opens it in
    a browser on a terminal) when the run's first snapshot names it."""

    def __init__(self, port: int = 0, open_browser: bool | None = None) -> None:
        self.server = UiServer(port=port)
        self.open_browser = sys.stdout.isatty() if open_browser is None else open_browser
        self.announced = False

    def __enter__(self) -> RunPage:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__()

    def watch(self, sink):
        """`sink`, first announcing the run's page on its first snapshot."""
        def announce_then(snap: JobSnapshot) -> None:
            if not self.announced:
                self.announced = True
                url = self.server.url_with_token(f"/jobs/{snap.job_id}")
                log.info("the run's web page: %s", url)
                if self.open_browser:
                    threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
            sink(snap)
        return announce_then
