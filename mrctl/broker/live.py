"""The web page's side channel to a run's master: the latest snapshot it published, and the
commands (cancel, kill a worker) sent to it. Both are keys of the run (keys.live, keys.control)."""

from __future__ import annotations

from mrctl.broker import keys
from mrctl.broker.base import BrokerBase, translated_errors


class LiveState(BrokerBase):
    """A run's live snapshot and its control list."""

    def publish_live(self, run: str, snapshot_json: str) -> None:
        """Replace the run's live snapshot (it expires unless published again)."""
        with translated_errors("publishing the live snapshot"):
            self.r.set(keys.live(run), snapshot_json, px=keys.LIVE_TTL_MS)

    def live(self, run: str) -> str | None:
        """The run's latest snapshot as JSON, or None when it has none (ended, or not yet)."""
        with translated_errors("reading the live snapshot"):
            found = self.r.get(keys.live(run))
        return found.decode() if found is not None else None

    def send_control(self, run: str, command: str) -> None:
        """Queue a command for the run's master, which takes it at its next tick."""
        if command not in keys.CONTROL_COMMANDS:
            raise ValueError(f"unknown control command {command!r}")
        with translated_errors("sending a command to the run"):
            pipe = self.r.pipeline(transaction=True)
            pipe.rpush(keys.control(run), command)
            pipe.pexpire(keys.control(run), keys.CONTROL_TTL_MS)
            pipe.execute()

    def take_control(self, run: str) -> list[str]:
        """Atomically take every command queued for the run, oldest first."""
        with translated_errors("reading the run's commands"):
            pipe = self.r.pipeline(transaction=True)
            pipe.lrange(keys.control(run), 0, -1)
            pipe.delete(keys.control(run))
            taken, _ = pipe.execute()
        return [c.decode() for c in taken]
