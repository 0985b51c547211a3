"""Cluster backends: where Redis and the workers run (docker containers or local processes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerExit:
    """A worker that stopped during a run, as its supervisor saw it."""

    name: str
    reason: str  # e.g. "exited with code 137", "killed: out of memory"
    oom: bool = False  # killed for exceeding its memory limit: the job's code is to blame
    log: str = ""  # the end of its log
