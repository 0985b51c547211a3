"""Cluster backends: where Redis and the workers run (docker containers or local processes)."""

from __future__ import annotations

import os
from dataclasses import dataclass

# Environment variables a container worker gets from the process that starts its cluster (local
# workers get the whole environment): PYTHONHASHSEED makes job code that iterates a set of
# strings give the same output on every backend, as mrjob's runners do for their tasks.
PASSED_ENVIRONMENT = ("PYTHONHASHSEED",)


def passed_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}


@dataclass(frozen=True)
class WorkerExit:
    """A worker that stopped during a run, as its supervisor saw it."""

    name: str
    reason: str  # e.g. "exited with code 137", "killed: out of memory"
    oom: bool = False  # killed for exceeding its memory limit: the job's code is to blame
    log: str = ""  # the end of its log
