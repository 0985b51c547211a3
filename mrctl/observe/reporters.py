"""Reporters: what `mrctl run` shows while a job runs, fed snapshots by the runner.

- LiveReporter (mrctl.observe.live_view): a rich Live view on a terminal, redrawn at most ~8 times a second, with log
  messages printed above it.
- PlainReporter: no TTY, CI=true or --plain: one line per phase change, a progress line every
  few seconds, the summary; never an ANSI escape.
- JsonReporter (--json): warnings/errors on stderr, the summary as one JSON line on stdout.
- QuietReporter (--quiet): errors only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import IO, Protocol

from mrctl.observe.snapshot import JobSnapshot
from mrctl.observe.views import phase_line, progress_line, summary_dict, summary_lines


class Reporter(Protocol):
    def start(self) -> None: ...
    def update(self, snap: JobSnapshot) -> None: ...
    def log(self, message: str, level: int) -> None: ...
    def finish(self, snap: JobSnapshot) -> None: ...
    def close(self) -> None: ...


class PlainReporter:
    def __init__(self, stream: IO[str], interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.interval, self.clock = stream, interval, clock
        self._phase: tuple[int, str] | None = None
        self._next = 0.0

    def _say(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def start(self) -> None:
        self._next = self.clock() + self.interval

    def update(self, snap: JobSnapshot) -> None:
        if (snap.step, snap.phase) != self._phase:
            self._phase = (snap.step, snap.phase)
            self._say(phase_line(snap))
        now = self.clock()
        if now >= self._next and snap.phase in ("map", "reduce"):
            self._next = now + self.interval
            self._say(progress_line(snap))

    def log(self, message: str, level: int) -> None:
        self._say(f"{logging.getLevelName(level).lower()}: {message}" if level >= logging.WARNING else message)

    def finish(self, snap: JobSnapshot) -> None:
        for line in summary_lines(snap):
            self._say(line)

    def close(self) -> None:
        pass


class JsonReporter:
    def __init__(self, stdout: IO[str], stderr: IO[str]) -> None:
        self.stdout, self.stderr = stdout, stderr

    def start(self) -> None:
        pass

    def update(self, snap: JobSnapshot) -> None:
        pass

    def log(self, message: str, level: int) -> None:
        if level >= logging.WARNING:
            self.stderr.write(f"{logging.getLevelName(level).lower()}: {message}\n")

    def finish(self, snap: JobSnapshot) -> None:
        self.stdout.write(json.dumps(summary_dict(snap)) + "\n")
        self.stdout.flush()

    def close(self) -> None:
        pass


class QuietReporter(JsonReporter):
    def log(self, message: str, level: int) -> None:
        if level >= logging.ERROR:
            self.stderr.write(f"error: {message}\n")

    def finish(self, snap: JobSnapshot) -> None:
        pass


def choose_reporter(mode: str | None, stdout: IO[str], stderr: IO[str],
                    environ: Mapping[str, str]) -> Reporter:
    """--json, --quiet or --plain as asked; otherwise live on a terminal, plain elsewhere."""
    if mode == "json":
        return JsonReporter(stdout, stderr)
    if mode == "quiet":
        return QuietReporter(stdout, stderr)
    ci = environ.get("CI", "").lower() not in ("", "0", "false", "no")
    if mode == "plain" or ci or environ.get("TERM") == "dumb" or not stderr.isatty():
        return PlainReporter(stderr)
    from rich.console import Console

    from mrctl.observe.live_view import LiveReporter  # rich: only a terminal's view needs it

    return LiveReporter(Console(file=stderr))


class ReporterLogHandler(logging.Handler):
    """Routes library log records to the reporter, so they print above a live view."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__()
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reporter.log(self.format(record), record.levelno)
        except Exception:  # a broken display must not break the job
            self.handleError(record)
