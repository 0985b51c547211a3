"""A run's live channel to the web page (mrctl.web), the master's side: it publishes each
snapshot it takes to the run's live key and takes the commands the page sent (keys.control).
Redis stays the only channel: the page and the run never talk directly."""

from __future__ import annotations

import dataclasses
import json

from mrctl.broker import Broker
from mrctl.observe.snapshot import JobSnapshot


class LiveChannel:
    """The run `run`'s live key and control list, through its cluster's broker."""

    def __init__(self, broker: Broker, run: str) -> None:
        self.broker = broker
        self.run = run

    def publish(self, snap: JobSnapshot) -> None:
        self.broker.publish_live(self.run, json.dumps(dataclasses.asdict(snap)))

    def commands(self) -> list[str]:
        """The commands sent since the last call, oldest first."""
        return self.broker.take_control(self.run)
