"""What a running job looks like at one instant: plain frozen data, taken by the master.

Views (rich live display, plain log lines, `mrctl status`, the `--json` summary) are pure
functions of a `JobSnapshot`; the master knows nothing about how it is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mrctl.spec.bad_records import SkippedRecord
from mrctl.spec.steps import step_label

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
class StepTasks:
    """One step's tasks as they ran, the same on every backend: built by `of` from the step's
    stats fields (maps_done, bytes_done, reduces_done), which the workers' commits count in
    Redis and the inline run counts itself."""

    number: int  # 1-based over the run, every iteration counted
    name: str
    map_done: int = 0
    map_total: int = 0
    map_bytes: int = 0  # input bytes of its committed map tasks (a later step's: its input blobs)
    reduce_done: int = 0
    reduce_total: int = 0

    @classmethod
    def of(cls, number: int, name: str, stats: Mapping[str, int], map_total: int, reducers: int) -> StepTasks:
        return cls(number, name, stats.get("maps_done", 0), map_total, stats.get("bytes_done", 0),
                   stats.get("reduces_done", 0), reducers)

    @classmethod
    def summed(cls, steps: Iterable[StepTasks], number: int = 0, name: str = "") -> StepTasks:
        """Several steps' tasks added up (a run's, or a repeated step's iterations)."""
        fields = ("map_done", "map_total", "map_bytes", "reduce_done", "reduce_total")
        steps = tuple(steps)
        return cls(number, name, *(sum(getattr(t, f) for t in steps) for f in fields))


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
    bad_record_samples: tuple[SkippedRecord, ...] = ()  # the first few, in input order
    step: int = 1  # multi-step jobs: the running step, 1-based over the run (iterations counted)
    steps: int = 1  # how many steps the run has, if no `until` ends an iteration early
    step_name: str = ""
    iteration: int = 1  # of the step's repeat group
    iterations: int = 1
    step_seconds: tuple[tuple[str, float], ...] = ()  # (step label, seconds) of each finished step
    spilled_bytes: int = 0  # intermediate data the master moved from Redis to its disk
    step_tasks: tuple[StepTasks, ...] = ()  # every step begun, in order, the running one last

    def tasks_total(self) -> StepTasks:
        """The run's tasks summed over its steps: the one source of every summary's task counts,
        whatever the backend (a run that failed before its first step: its map/reduce progress)."""
        if not self.step_tasks:
            return StepTasks(self.step, self.step_name, self.map.done, self.map.total, self.map.bytes_done,
                             self.reduce.done, self.reduce.total)
        return StepTasks.summed(self.step_tasks)

    def step_label(self) -> str:
        """"step 3/11 (iterate, iteration 2/10)", or "" for a one-step job."""
        if self.steps <= 1:
            return ""
        return step_label(self.step, self.steps, self.step_name, self.iteration, self.iterations)
