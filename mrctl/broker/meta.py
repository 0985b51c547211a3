"""A job's settings in Redis, typed: what the master publishes when a step begins, and what
the workers, `mrctl status` and the web page read back. The fields, their types and their
defaults are defined here only; Redis holds each as a string in one hash.

    mrctl:<job>:meta   HASH  one field per JobMeta field (keys.meta); written by the master
                             (publish_job, then set_meta for state and phase) and by the Lua
                             fail script (state=failed, failed_task), dropped with the job's keys

Encoding: str as is; int and float with str(); bool as "1"/"0"; None as ""; params as a JSON
object; counters as a JSON list of [group, name, value]. A field missing from the hash takes
its default, so a reader never carries a default of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

Counters = tuple[tuple[str, str, int], ...]  # (group, name, value), sorted


@dataclass(frozen=True)
class JobMeta:
    name: str = ""  # the spec's name
    run: str = ""  # the run's job id (a later step has a job id of its own, keys.step_job)
    state: str = "starting"  # starting | running | succeeded | failed | interrupted
    phase: str = "starting"  # starting | map | reduce | done
    failed_task: str = ""  # the task that failed for good (set by the Lua fail script)
    created: float | None = None  # epoch seconds the step was published
    # the job's code: its module (a key of the code hash) and classes
    module: str = ""
    module_file: str = ""  # the user's path, named in errors and tracebacks
    mapper: str = ""
    reducer: str = ""
    combiner: str = ""
    # how tasks run
    reducers: int = 0
    map_tasks: int = 0
    max_attempts: int = 4
    task_timeout: float = 300.0
    lease_s: float = 0.0  # 0: the worker's own default
    encoding_errors: str = "replace"  # replace | strict
    bad_records: str = "fail"  # fail | skip
    bad_records_max: int | None = None
    sort_values: bool = False
    speculative: bool = False  # workers then claim one task at a time
    worker_output: bool = False  # workers ship what the job's code prints
    params: dict[str, Any] = field(default_factory=dict)
    # where the step sits in a multi-step run
    step: int = 1
    steps: int = 1
    step_name: str = "job"  # the step's name (a one-step job's is "job")
    iteration: int = 1
    iterations: int = 1
    previous_counters: Counters = ()  # the job's counters of the step before
    job_counters: Counters = ()  # summed over the steps before

    def to_redis(self) -> dict[str, str]:
        """Every field as the hash holds it."""
        return {f.name: encode(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> JobMeta:
        """The hash read back; a missing field takes its default, an unknown one is ignored
        (a newer master's)."""
        default = cls()
        values = {f.name: _decode(raw[f.name], getattr(default, f.name), f.type)
                  for f in fields(cls) if f.name in raw}
        return replace(default, **values)


def meta_fields(**changes: Any) -> dict[str, str]:
    """Some of a job's fields, encoded for an update (set_meta); an unknown name is a bug."""
    known = {f.name for f in fields(JobMeta)}
    wrong = sorted(set(changes) - known)
    if wrong:
        raise ValueError(f"JobMeta has no field {wrong[0]!r}")
    return {name: encode(value) for name, value in changes.items()}


def encode(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, tuple):
        return json.dumps([list(item) for item in value])
    return str(value)


def _decode(text: str, default: Any, annotation: str) -> Any:
    if annotation.startswith("bool"):
        return text == "1"
    if annotation.startswith("Counters"):
        return tuple((g, n, int(v)) for g, n, v in json.loads(text or "[]"))
    if annotation.startswith("dict"):
        return json.loads(text or "{}")
    if text == "":
        return None if "None" in annotation else default
    if annotation.startswith("int"):
        return int(text)
    if annotation.startswith("float"):
        return float(text)
    return text
