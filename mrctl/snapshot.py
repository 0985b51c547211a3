"""What a running job looks like at one instant: plain frozen data, taken by the master.

Views (rich live display, plain log lines, `mrctl status`, the `--json` summary) are pure
functions of a `JobSnapshot`; the master knows nothing about how it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mrctl.bad_records import BadRecord
from mrctl.steps import step_label

# Phases in the order a run goes through them.
PHASES = ("starting", "map", "barrier", "reduce", "output", "teardown", "done")


@dataclass(frozen=True)
class PhaseProgress:
    """Progress of the map or the reduce phase. Times are seconds since the job started."""

    done: int = 0
    total: int = 0
    running: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True)
class WorkerRow:
    """One worker as the master last saw it.

    state: starting | idle | mapping | reducing | dead | replaced
    """

    name: str
    state: str
    task: str | None = None
    attempt: int | None = None
    tasks_done: int = 0
    heartbeat_age: float | None = None


@dataclass(frozen=True)
class Event:
    """Something worth telling a learner: kind is retry | refused | failed | lost | timeout | replaced | chaos |
    speculative | cancelled | info."""

    at: float
    kind: str
    message: str


@dataclass(frozen=True)
class JobSnapshot:
    job_id: str
    name: str
    phase: str
    elapsed: float
    status: str = "running"  # running | succeeded | failed | interrupted
    map: PhaseProgress = field(default_factory=PhaseProgress)
    reduce: PhaseProgress = field(default_factory=PhaseProgress)
    workers: tuple[WorkerRow, ...] = ()
    events: tuple[Event, ...] = ()
    retries: int = 0
    refused: int = 0
    failures: int = 0
    records_in: int = 0
    records_out: int = 0
    decode_errors: int = 0
    failed_attempts: int = 0  # attempts whose user code raised, timed out or ran out of memory
    lost: int = 0  # attempts whose worker died or stopped heartbeating
    timeouts: int = 0  # attempts that exceeded task_timeout
    killed: int = 0  # workers killed on purpose by --chaos
    backups: int = 0  # speculative backup attempts started for straggling map tasks
    redis_peak_bytes: int = 0  # Redis used_memory_peak (INFO memory)
    phase_seconds: tuple[tuple[str, float], ...] = ()
    output_path: str | None = None
    error: str | None = None
    counters: tuple[tuple[str, str, int], ...] = ()  # the job's own: (group, name, total), sorted
    bad_records: int = 0  # records skipped because map raised (bad_records policy skip)
    bad_record_samples: tuple[BadRecord, ...] = ()  # the first few, in input order
    step: int = 1  # multi-step jobs: the running step, 1-based over the run (iterations counted)
    steps: int = 1  # how many steps the run has, if no `until` ends an iteration early
    step_name: str = ""
    iteration: int = 1  # of the step's repeat group
    iterations: int = 1
    step_seconds: tuple[tuple[str, float], ...] = ()  # (step label, seconds) of each finished step
    spilled_bytes: int = 0  # intermediate data the master moved from Redis to its disk

    def step_label(self) -> str:
        """"step 3/11 (iterate, iteration 2/10)", or "" for a one-step job."""
        if self.steps <= 1:
            return ""
        return step_label(self.step, self.steps, self.step_name, self.iteration, self.iterations)
