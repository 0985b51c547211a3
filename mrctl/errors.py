"""The one exception root of mrctl and the exit code each kind of failure maps to.

Third-party errors (YAML, Redis, Docker) are translated into these where they enter mrctl,
with a message that says what happened and what to do. The CLI maps them to exit codes once.
"""

from __future__ import annotations

import traceback

MAX_MESSAGE_CHARS = 500  # of an exception's message in events, summaries and errors
MAX_TRACEBACK_CHARS = 8000  # the end of a traceback, where the exception is


class MrctlError(Exception):
    """Root of every error mrctl reports to a user; `exit_code` is the process exit status."""

    exit_code = 1


class JobFailed(MrctlError):
    """The job ran but a task failed for good (user code raised on every attempt, or hung)."""

    exit_code = 1


class SpecError(MrctlError):
    """A job spec, a flag or a job module is wrong: the user's mistake, fixable by editing."""

    exit_code = 2


class InfraError(MrctlError):
    """Something mrctl needs is unavailable: redis-server, Docker, an image, the network."""

    exit_code = 3


class Interrupted(MrctlError):
    """The run was stopped by a signal; exit code is 128 + the signal number (130, 143)."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


class Cancelled(Interrupted):
    """The run was cancelled from the web page (mrctl ui): it stops like a Ctrl-C (teardown, no
    output), exits 130, and is recorded as cancelled."""

    def __init__(self, by: str = "the web page") -> None:
        super().__init__(2)  # SIGINT's exit code: the same stop as a Ctrl-C
        self.args = (f"cancelled from {by}",)


class JobCodeError(TypeError):
    """A job's code broke the Mapper/Reducer contract (e.g. `return` where `yield` was meant).

    Raised inside a task, like any exception of the job's code (the attempt fails and is
    retried); its message names the user's method, file and line, so its traceback, which
    shows only mrctl's frames, is left out.
    """


def exit_status(exc: MrctlError | KeyboardInterrupt) -> tuple[int, str]:
    """The exit code and the one line on stderr for an error that ends a command without a
    traceback (mrctl's own, or a Ctrl-C). Every entry point (the CLI, the worker process) maps
    errors through this one function."""
    if isinstance(exc, MrctlError):
        return exc.exit_code, f"mrctl: error: {exc}"
    return 130, "mrctl: interrupted"


def bounded(text: str, limit: int, keep: str = "start") -> str:
    """`text` cut to about `limit` characters (its start, or its end), saying how much went."""
    if len(text) <= limit:
        return text
    cut = f" [... {len(text) - limit} characters left out ...] "
    return text[:limit] + cut if keep == "start" else cut + text[-limit:]


def bounded_message(exc: BaseException) -> str:
    """`Type: message` of a user's exception, bounded: one may carry megabytes (a repr of a
    whole partition), and this text goes to Redis, the master and the terminal."""
    return bounded(f"{type(exc).__name__}: {exc}", MAX_MESSAGE_CHARS)


def bounded_traceback(exc: BaseException) -> str:
    if isinstance(exc, JobCodeError):  # its message points at the user's code already
        return ""
    return bounded("".join(traceback.format_exception(exc)), MAX_TRACEBACK_CHARS, keep="end")
