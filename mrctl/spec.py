"""The YAML job spec, validated into frozen dataclasses.

PLACEHOLDER: the loader/validator is being written; the dataclasses below are the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OUTPUT_FORMATS = ("json", "jsonl", "tsv")
BACKENDS = ("docker", "local", "inline")


@dataclass(frozen=True)
class WorkerLimits:
    """Container limits for each worker (docker backend only); None means no limit."""

    cpus: float | None = None
    memory: str | None = None  # docker notation: "512m", "2g"
    pids: int | None = None


@dataclass(frozen=True)
class JobSpec:
    name: str
    spec_path: Path  # absolute path of the YAML file
    inputs: tuple[Path, ...]  # absolute paths of regular files, expanded and sorted
    module: Path  # absolute path of the job module (.py)
    mapper: str
    reducer: str
    combiner: str | None
    output_path: Path  # absolute
    output_format: str  # one of OUTPUT_FORMATS
    reducers: int = 4
    chunk_size: int = 4 * 1024 * 1024
    workers: int = 2
    limits: WorkerLimits = WorkerLimits()
    task_timeout: float = 300.0
    max_attempts: int = 4
    encoding_errors: str = "replace"  # replace | strict
    backend: str = "docker"
