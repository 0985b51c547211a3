"""What every `mrctl` command shares: mrctl's exception root mapped to exit codes, once, and
logging set up by the command (never by the library)."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from mrctl.errors import MrctlError, exit_status

EXIT_CODES_HELP = (
    "Exit codes: 0 success, 1 job failed (user code error after retries), 2 usage or spec "
    "error, 3 infrastructure error (Docker or Redis unavailable, image build failed), "
    "130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."
)

F = TypeVar("F", bound=Callable[..., Any])


def exit_codes(fn: F) -> F:
    """Map mrctl's exception root to exit codes: message on stderr, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (MrctlError, KeyboardInterrupt) as exc:
            code, line = exit_status(exc)
            typer.echo(line, err=True)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def setup_logging(level: int, handler: logging.Handler | None = None) -> None:
    root = logging.getLogger()
    root.handlers[:] = [handler or logging.StreamHandler(sys.stderr)]
    if handler is None:
        root.handlers[0].setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root.setLevel(level)
