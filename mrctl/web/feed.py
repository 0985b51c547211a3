"""The live feed of one job, as server-sent events: its master publishes a snapshot to the
run's live key (mrctl.master.live) at the snapshot pace; the feed reads the key and pushes each new
one to the browser, and tells it when the run has ended (its record is in the history).

Events: `snapshot` (the JobSnapshot as JSON), `waiting` ({message}: no run found yet, or it
has not published), `ended` ({status, exit_code, reload}: reload false when the server is stopping, so the
page cannot be loaded again), and a comment now and then so that
proxies and the browser keep the connection open.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable

from mrctl.backends.discovery import LiveRun, find, recorded
from mrctl.broker import Broker
from mrctl.errors import InfraError

POLL_S = 0.25  # how often the live key is read (the master writes it every 0.2 s)
LOOK_S = 1.0  # how often a run not found yet is looked for again (Docker and the state dir)
KEEPALIVE_S = 15.0


def sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


class LiveFeed:
    """The events of one job's page, until the run ends, the browser leaves or the server stops."""

    def __init__(self, job_id: str, stopping: threading.Event, gone: Callable[[], object]) -> None:
        self.job_id = job_id
        self.stopping = stopping
        self.gone = gone  # async: True once the browser has disconnected
        self.run: LiveRun | None = None
        self.broker: Broker | None = None

    async def events(self) -> AsyncIterator[str]:
        last, looked, quiet_since = None, 0.0, time.monotonic()
        try:
            while not await self.gone():
                stopping = self.stopping.is_set()  # the server stops (run --ui: its run ended)
                if (end := await asyncio.to_thread(recorded, self.job_id)) is not None:
                    yield sse("ended", json.dumps({"status": end[0], "exit_code": end[1], "reload": not stopping}))
                    return
                if stopping:
                    return
                if self.broker is None and time.monotonic() - looked >= LOOK_S:
                    looked = time.monotonic()
                    await asyncio.to_thread(self._connect)
                snap = await asyncio.to_thread(self._read) if self.broker is not None else None
                if snap is not None and snap != last:
                    last, quiet_since = snap, time.monotonic()
                    yield sse("snapshot", snap)
                elif last is None and time.monotonic() - quiet_since > LOOK_S:
                    yield sse("waiting", json.dumps({"message": self._waiting()}))
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > KEEPALIVE_S:
                    yield ": keep-alive\n\n"
                    quiet_since = time.monotonic()
                await asyncio.sleep(POLL_S)
        finally:
            if self.broker is not None:
                self.broker.close()

    def _waiting(self) -> str:
        if self.run is None:
            return f"no run {self.job_id} is going on here (yet); waiting for it…"
        if self.run.redis_url is None:
            return f"run {self.job_id} is going on, but its Redis cannot be reached from here"
        return "waiting for the run's first snapshot…"

    def _connect(self) -> None:
        self.run = find(self.job_id)
        if self.run is not None and self.run.redis_url is not None:
            self.broker = Broker(self.run.redis_url, retries=0, socket_timeout=5)

    def _read(self) -> str | None:
        """The live snapshot; None when it is gone (the run ended: its Redis stopped, or its
        keys were dropped) or not there yet."""
        assert self.broker is not None
        try:
            return self.broker.live(self.job_id)
        except InfraError:
            self.broker.close()
            self.broker = None  # the cluster went away: look again, or see the record
            return None
