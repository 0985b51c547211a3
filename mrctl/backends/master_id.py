"""The master a Docker or swarm cluster serves, carried in its objects' labels, so that `mrctl
down` never removes a cluster whose master still runs (issue 24).

    mrctl.master.host      the master's hostname
    mrctl.master.boot-id   its kernel's boot id (/proc/sys/kernel/random/boot_id)
    mrctl.master.pid       its pid
    mrctl.master.started   its start time, clock ticks after boot (a reused pid never matches)

A master is checked with the local backend's process names (mrctl.backends.local_registry):
on this host and boot, it runs iff its pid still has that start time; another boot of this
host means it is gone; on another host it cannot be checked, and counts as running.
A cluster left on purpose (`--keep`) gets a volume labelled KEPT_ROLE when its master exits
normally: it no longer has a master to wait for, wherever that master ran.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from mrctl.backends import local_registry
from mrctl.backends.local_registry import Process
from mrctl.dockerapi.host import (
    LABEL_MASTER_BOOT,
    LABEL_MASTER_HOST,
    LABEL_MASTER_PID,
    LABEL_MASTER_STARTED,
)

KEPT_ROLE = "kept"  # mrctl.role of the volume that marks a cluster left by --keep

RUNNING, GONE, ELSEWHERE = "running", "gone", "elsewhere"


def kept_volume(cluster: str) -> str:
    return f"mrctl-{cluster}-kept"


@dataclass(frozen=True)
class Master:
    """A cluster's master, named so that a recycled pid or another boot never passes for it."""

    host: str
    boot_id: str
    pid: int
    started: int

    @classmethod
    def this(cls) -> Master | None:
        """This process; None where processes cannot be named (no Linux /proc)."""
        if not local_registry.supported():
            return None
        pid = os.getpid()
        return cls(socket.gethostname(), local_registry.boot_id(), pid, Process.of(pid, "master").started)

    def labels(self) -> dict[str, str]:
        return {LABEL_MASTER_HOST: self.host, LABEL_MASTER_BOOT: self.boot_id,
                LABEL_MASTER_PID: str(self.pid), LABEL_MASTER_STARTED: str(self.started)}

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> Master | None:
        """The master named in `labels`; None when they name none (a cluster made before
        masters were recorded, or on a host without /proc)."""
        try:
            return cls(labels[LABEL_MASTER_HOST], labels[LABEL_MASTER_BOOT], int(labels[LABEL_MASTER_PID]),
                       int(labels[LABEL_MASTER_STARTED]))
        except (KeyError, ValueError):
            return None

    def state(self) -> str:
        """RUNNING, GONE, or ELSEWHERE (another host: it cannot be checked from here)."""
        if local_registry.supported() and self.boot_id == local_registry.boot_id():
            return RUNNING if local_registry.running_here(Process(self.pid, self.started, "master"),
                                                         self.boot_id) else GONE
        return GONE if self.host == socket.gethostname() else ELSEWHERE  # same host, another boot

    def where(self) -> str:
        return f"pid {self.pid}" if self.host == socket.gethostname() else f"pid {self.pid} on host {self.host}"
