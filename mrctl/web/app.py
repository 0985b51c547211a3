"""The web page's routes (Starlette): the run list, a job's page (live or finished), its live
feed (server-sent events), its timeline picture, and the actions.

Every route needs the session's token (mrctl.web.gate: printed in the URL, then an HttpOnly,
SameSite=Strict cookie). Actions are POSTs, and a POST from another origin is refused as well:
a page of another site can neither send the cookie nor pass the Origin check, so no cross-site
request can cancel a job. Only loopback Host names are served (a DNS-rebinding page would send
its own), and the server listens on 127.0.0.1 only (mrctl.web.server).
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import threading
from html import escape
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mrctl.backends.discovery import discover
from mrctl.errors import MrctlError
from mrctl.observe.history import History, HistoryError, HistoryLookupError, RunRow
from mrctl.observe.record import RunRecord
from mrctl.web import actions, pages
from mrctl.web.feed import LiveFeed
from mrctl.web.gate import TokenGate

LOOPBACK_NAMES = ["127.0.0.1", "localhost"]
HISTORY_SHOWN = 50
_DRAWING = threading.Lock()  # matplotlib's pyplot state is not thread-safe


def create_app(token: str | None = None, stopping: threading.Event | None = None) -> Starlette:
    """The app, with its session token (random unless given) and the event that ends its
    live feeds when the server stops."""
    token = token or secrets.token_urlsafe(32)
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/jobs/{job_id}", job_page),
            Route("/jobs/{job_id}/events", job_events),
            Route("/jobs/{job_id}/timeline.svg", job_timeline),
            Route("/jobs/{job_id}/{what:str}", job_command, methods=["POST"]),
            Route("/clusters/{cid}/remove", cluster_remove, methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(resources.files("mrctl.web").joinpath("static"))),
                  name="static"),
        ],
        # the Host check first: a rebinding page's request is refused before its token is looked at
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_NAMES),
                    Middleware(TokenGate, token=token)],
    )
    app.state.token = token
    app.state.stopping = stopping or threading.Event()
    return app


async def index(request: Request) -> HTMLResponse:
    found, (rows, note) = await asyncio.gather(asyncio.to_thread(discover), asyncio.to_thread(_history_rows))
    return _page(request, "runs", pages.index(found, rows, note))


async def job_page(request: Request) -> HTMLResponse:
    job_id = request.path_params["job_id"]
    try:
        run = await asyncio.to_thread(_record, job_id)
    except HistoryError as exc:  # the live view needs no history
        run, note = None, str(exc)
    else:
        note = None
    if run is not None:
        return _page(request, run.name, pages.finished_job(run, _timeline_available()), job_id)
    body = pages.live_job(job_id)
    if note:
        body += f'<p class="note error">{escape(note)}</p>'
    return _page(request, job_id, body, job_id)


async def job_events(request: Request) -> StreamingResponse:
    feed = LiveFeed(request.path_params["job_id"], request.app.state.stopping, request.is_disconnected)
    return StreamingResponse(feed.events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def job_timeline(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    run = await asyncio.to_thread(_record, job_id)
    if run is None or not _timeline_available():
        return Response("no timeline", status_code=404)
    try:
        return Response(await asyncio.to_thread(draw_svg, run), media_type="image/svg+xml")
    except MrctlError as exc:
        return Response(f"the timeline could not be drawn: {exc}", status_code=500)


async def job_command(request: Request) -> JSONResponse:
    if (refused := _refuse(request)) is not None:
        return refused
    what = request.path_params["what"]
    if what not in actions.MESSAGES:
        return JSONResponse({"error": f"no action {what!r}"}, status_code=404)
    return await _act(actions.command, request.path_params["job_id"], what)


async def cluster_remove(request: Request) -> JSONResponse:
    if (refused := _refuse(request)) is not None:
        return refused
    return await _act(actions.remove_cluster, request.path_params["cid"])


async def _act(action, *args: str) -> JSONResponse:
    try:
        return JSONResponse({"message": await asyncio.to_thread(action, *args)})
    except actions.ActionRefused as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    except MrctlError as exc:
        return JSONResponse({"error": str(exc)}, status_code=502)


def _refuse(request: Request) -> JSONResponse | None:
    """403 unless the request comes from this page's origin (its token was checked by the
    gate; a browser sends Origin with every POST: a foreign one is refused, a missing one
    allowed for scripts that hold the token)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"http://{request.headers.get('host', '')}":
        return JSONResponse({"error": f"requests from {origin} are refused"}, status_code=403)
    return None


def _page(request: Request, title: str, body: str, job_id: str = "") -> HTMLResponse:
    return HTMLResponse(pages.page(title, body, job_id),
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                            "img-src 'self'; frame-ancestors 'none'"})


def _history_rows() -> tuple[list[RunRow], str | None]:
    try:
        with History() as h:
            return h.runs(HISTORY_SHOWN), None
    except HistoryError as exc:
        return [], str(exc)


def _record(job_id: str) -> RunRecord | None:
    """The finished run `job_id` (exactly that id), or None if the history has not got it."""
    try:
        with History() as h:
            run = h.get(job_id)
    except HistoryLookupError:
        return None
    return run if run.job_id == job_id else None


def _timeline_available() -> bool:
    try:
        from mrctl.observe import timeline  # noqa: F401 - drawn by another part of issue 15
    except ImportError:
        return False
    return True


def draw_svg(run: RunRecord) -> bytes:
    """The run's timeline (mrctl.observe.timeline.draw, the picture `mrctl timeline` writes) as SVG."""
    from mrctl.observe import timeline

    with _DRAWING, tempfile.TemporaryDirectory(prefix="mrctl-timeline-") as folder:
        return timeline.draw(run, Path(folder) / "timeline.svg").read_bytes()
