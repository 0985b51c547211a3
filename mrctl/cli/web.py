"""`mrctl ui`: the web page, a thin skin over mrctl.web (registered on the app by mrctl.cli.main)."""

from __future__ import annotations

from typing import Annotated

import typer


def ui(
    port: Annotated[int, typer.Option("--port", "-p", help="Port on 127.0.0.1 (0: any free port).")] = 8470,
    host: Annotated[str, typer.Option(help="127.0.0.1 or localhost; anything else is refused (exit 2).")] = "127.0.0.1",
) -> None:
    """Serve the web page on 127.0.0.1: recorded runs, running jobs and clusters, a running
    job live (cancel it, kill a worker), a finished job's summary, counters and timeline.

    Nothing is served without the session's token: open the URL it prints
    (http://127.0.0.1:8470/?token=...); the browser keeps the token in a cookie.

    Example:

    \b
      mrctl ui --port 8470
    """
    import logging
    import sys

    from mrctl.web.server import serve

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    serve(host, port, announce=lambda url: typer.echo(f"mrctl ui: serving {url} (Ctrl-C stops)", err=True))
