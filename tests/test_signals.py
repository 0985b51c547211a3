"""A signal's Interrupted is never lost, wherever in the main thread the handler ran.

Python runs a signal handler at whichever bytecode the main thread is at, and an exception raised
inside a finalizer is printed and dropped; a SIGTERM that landed in redis-py's
`ConnectionPool.__del__` once let a job run to the end and exit 0 (CI, test_run_cli).
"""

from __future__ import annotations

import gc
import signal
import sys

import pytest

from mrctl.errors import Interrupted
from mrctl.master import signals
from mrctl.master.signals import SignalGuard


class _SignalledWhileCollected:
    """An object whose finalizer is where the signal's handler runs."""

    def __init__(self, sig: int) -> None:
        self.sig = sig

    def __del__(self) -> None:
        signal.raise_signal(self.sig)  # the handler runs at the next bytecode: still in here
        sum(range(10))


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_dropped_by_a_finalizer_is_raised_at_the_next_check(sig, code, capfd):
    with SignalGuard() as guard:
        _SignalledWhileCollected(sig)  # collected at once: the handler raises inside __del__
        gc.collect()
        assert guard.received == sig  # the handler ran, and Python dropped what it raised
        with pytest.raises(Interrupted) as caught:
            signals.check()
        assert caught.value.exit_code == code
        signals.check()  # raised once: the teardown that follows is not interrupted again
    assert "Exception ignored" not in capfd.readouterr().err


def test_a_signal_outside_finalizers_raises_at_once_and_leaves_nothing_to_check():
    with SignalGuard() as guard, pytest.raises(Interrupted):
        signal.raise_signal(signal.SIGTERM)
        sum(range(10))
    assert guard.dropped is None


def test_other_dropped_exceptions_still_reach_the_previous_hook(monkeypatch):
    class Broken:
        def __del__(self) -> None:
            raise ValueError("a finalizer's own error")

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    with SignalGuard():
        Broken()
        gc.collect()
        signals.check()  # not a signal: nothing to raise
    assert [str(u.exc_value) for u in seen] == ["a finalizer's own error"]


def test_the_guard_puts_back_the_handlers_and_the_hook_it_found():
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.unraisablehook)
    with SignalGuard(), SignalGuard():
        assert signal.getsignal(signal.SIGTERM) is not before[1]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.unraisablehook) == before
