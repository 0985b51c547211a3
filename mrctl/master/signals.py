"""Turning SIGINT and SIGTERM into an orderly stop.

The first signal raises `Interrupted` in the main thread, which unwinds through every resource
owner's __exit__ (so containers, processes and temp files are removed). Further signals do not
interrupt that teardown: they only set `forced`, which owners may read to skip grace periods.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from mrctl.errors import Interrupted

log = logging.getLogger(__name__)

_HANDLED = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    """While active (main thread only), SIGINT/SIGTERM raise Interrupted once, then only force."""

    forced = False

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in _HANDLED:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
            raise Interrupted(signum)
        SignalGuard.forced = True
        log.warning("%s again: forcing a faster teardown", signal.Signals(signum).name)
