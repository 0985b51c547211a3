"""Turning SIGINT and SIGTERM into an orderly stop.

The first signal raises `Interrupted` in the main thread, which unwinds through every resource
owner's __exit__ (so containers, processes and temp files are removed). Further signals do not
interrupt that teardown: they only set `forced`, which owners may read to skip grace periods.

Python runs a signal's handler wherever the main thread is, a finalizer (`__del__`) or a weakref
callback too, and an exception raised there is printed as "Exception ignored" and dropped: the
run went on as if no signal had come (seen with redis-py's `ConnectionPool.__del__`, the SIGTERM
ignored and the job finished). While a guard is active, such a dropped `Interrupted` is kept, and
`check()`, which the master calls between its steps, raises it again.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any, ClassVar

from mrctl.errors import Interrupted

log = logging.getLogger(__name__)

_HANDLED = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    """While active (main thread only), SIGINT/SIGTERM raise Interrupted once, then only force."""

    forced = False
    _active: ClassVar[list[SignalGuard]] = []

    def __init__(self) -> None:
        self.received: int | None = None
        self.dropped: Interrupted | None = None  # raised where Python drops exceptions
        self._previous: dict[int, object] = {}
        self._previous_hook: Any = None

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in _HANDLED:
                self._previous[sig] = signal.signal(sig, self._handle)
            self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
            SignalGuard._active.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self in SignalGuard._active:
            SignalGuard._active.remove(self)
            sys.unraisablehook = self._previous_hook

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
            raise Interrupted(signum)
        SignalGuard.forced = True
        log.warning("%s again: forcing a faster teardown", signal.Signals(signum).name)

    def _unraisable(self, unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, Interrupted):
            log.debug("a signal landed in %r, which drops exceptions: raised again at the next check",
                      unraisable.object)
            self.dropped = unraisable.exc_value
        else:
            self._previous_hook(unraisable)

    def check(self) -> None:
        """Raise the Interrupted that a finalizer dropped, if one did."""
        if (dropped := self.dropped) is not None:
            self.dropped = None
            raise dropped


def check() -> None:
    """Raise, in the main thread, a signal's Interrupted that Python dropped (see the module)."""
    if threading.current_thread() is threading.main_thread():
        for guard in list(SignalGuard._active):
            guard.check()
