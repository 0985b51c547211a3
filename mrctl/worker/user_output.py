"""What the job's own code prints, made visible on every backend (`mrctl run --worker-output`).

While user code runs, `print()` and `logging` records from the job's loggers still reach the
worker's own output (container logs, the local worker's log) and are also collected, line by
line and bounded, for the worker to ship to Redis with its task; the master prints them
prefixed with the worker and the task. Redis stays the only channel: nothing assumes the master
can read the worker's files or containers.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

MAX_LINES = 200  # per task: a job that prints per record must not flood Redis
MAX_LINE_CHARS = 500


class OutputCapture:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.dropped = 0
        self._partial = ""

    @contextlib.contextmanager
    def capturing(self) -> Iterator[None]:
        """Tee sys.stdout and sys.stderr, and catch the job's log records, for the block."""
        handler = _Collect(self)
        root = logging.getLogger()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(saved[0], self), _Tee(saved[1], self)
        root.addHandler(handler)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = saved
            root.removeHandler(handler)
            self.add("", flush=True)

    def add(self, text: str, flush: bool = False) -> None:
        """Collect `text`: a line is complete at its newline; `flush` completes the rest, and an
        overlong partial line is cut."""
        *complete, self._partial = (self._partial + text).split("\n")
        if self._partial and (flush or len(self._partial) >= MAX_LINE_CHARS):
            complete.append(self._partial)
            self._partial = ""
        for line in complete:
            if len(self.lines) < MAX_LINES:
                self.lines.append(line[:MAX_LINE_CHARS])
            else:
                self.dropped += 1

    def take(self) -> list[str]:
        """The lines collected so far (and a note of how many were left out), then empty."""
        lines, dropped = self.lines, self.dropped
        self.lines, self.dropped = [], 0
        return lines + ([f"[... {dropped} more lines not shown]"] if dropped else [])


class _Tee:
    def __init__(self, stream: TextIO, capture: OutputCapture) -> None:
        self.stream, self.capture = stream, capture

    def write(self, text: str) -> int:
        self.capture.add(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


class _Collect(logging.Handler):
    """The job's log records (mrctl's own loggers are the worker's, not the job's)."""

    def __init__(self, capture: OutputCapture) -> None:
        super().__init__()
        self.capture = capture
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("mrctl"):
            self.capture.add(self.format(record) + "\n")
