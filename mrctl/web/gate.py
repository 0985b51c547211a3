"""The page's session token, carried the way Jupyter carries its own: every request needs it.

The server makes a random token when it starts and prints it in the page's URL
(`http://127.0.0.1:PORT/?token=...`). A GET carrying the right `?token=` is answered with a
cookie holding it (HttpOnly: no script reads it; SameSite=Strict: no other site's page or link
sends it) and a redirect to the same URL without the token, so that it leaves the address bar
and the history. From then on the browser's cookie opens every route: pages, the live feed, the
timeline picture, the script and the actions. A script may send the token in an
`X-Mrctl-Token` header instead.

Without it, any route answers 403 with a fixed text: the server listens on 127.0.0.1, which
every user of the machine can reach, and its pages show spec and output paths, job names and
tracebacks, and its actions cancel runs and remove clusters with the owner's Docker rights.

The cookie's name carries the port: a browser sends 127.0.0.1's cookies to every port of it, so
two servers (`mrctl ui` and a `run --ui`) must not overwrite each other's.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

QUERY = "token"
HEADER = "x-mrctl-token"
REFUSED = ("403 Forbidden: this page needs its token. Open the URL that `mrctl ui` (or `mrctl run --ui`) "
           "printed, http://127.0.0.1:PORT/?token=...; a restarted server has a new one.\n")


def cookie_name(port: int | None) -> str:
    return f"mrctl-token-{port or 0}"


def url_with_token(url: str, token: str) -> str:
    """The URL a user opens: `url` with the session's token as its query."""
    return f"{url}?{urlencode({QUERY: token})}"


class TokenGate:
    """ASGI middleware: passes on only the requests that carry the session's token (cookie or
    header); exchanges a GET's `?token=` for the cookie; refuses everything else with 403."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        cookie = cookie_name(request.url.port)
        offered = request.query_params.get(QUERY) if request.method in ("GET", "HEAD") else None
        if offered is not None:
            response = self._admit(request, cookie) if self._valid(offered) else _refused()
        elif self._valid(request.cookies.get(cookie) or request.headers.get(HEADER) or ""):
            await self.app(scope, receive, send)
            return
        else:
            response = _refused()
        await response(scope, receive, send)

    def _valid(self, offered: str) -> bool:
        return secrets.compare_digest(offered.encode(), self.token)

    def _admit(self, request: Request, cookie: str) -> RedirectResponse:
        """The cookie, and a redirect to the same path and query without the token."""
        rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != QUERY])
        response = RedirectResponse(request.url.path + (f"?{rest}" if rest else ""), status_code=303,
                                    headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
        response.set_cookie(cookie, self.token.decode(), path="/", httponly=True, samesite="strict")
        return response


def _refused() -> PlainTextResponse:
    # A fixed text: nothing of the request (a job id in the path) or of the runs goes back.
    return PlainTextResponse(REFUSED, status_code=403, headers={"Cache-Control": "no-store"})
