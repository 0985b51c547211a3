"""The master: plans the input, feeds map tasks with back-pressure, reaps expired attempts,
crosses the barrier into the reduce phase, moves on to the next step of a multi-step job, and
merges the last step's reduce outputs.

Each call to `tick()` is one step of that loop; the driver (mrctl.master.driver) calls it repeatedly.
The master never runs user code: it ships the job modules as source and only reads plain data.

Each step of a run is a job of its own in Redis, `<run id>` for a one-step job and
`<run id>.s<n>` for step n of a multi-step one: its tasks, leases and fencing are exactly a
one-step job's. A later step's map task i reads the previous step's output i (reduce r's
pairs, or a map-only step's map i's), moved inside Redis; then the finished step's keys go.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mrctl.backends import WorkerExit
from mrctl.broker import Broker, keys
from mrctl.broker.meta import JobMeta
from mrctl.errors import JobFailed
from mrctl.io.chunks import ChunkReader, ChunkRef, display_path, lines_before, plan_chunks
from mrctl.io.task_ids import MAP, REDUCE, is_map, map_tid, task_id
from mrctl.master.progress import ProgressMixin, user_counters
from mrctl.master.spill import Spiller
from mrctl.master.spill_store import SpillStore
from mrctl.observe.record import EVENTS_KEPT, AttemptBook
from mrctl.observe.snapshot import Event, StepTasks
from mrctl.spec import job_files
from mrctl.spec.bad_records import SkippedRecord, exceeded_message
from mrctl.spec.jobspec import JobSpec
from mrctl.spec.steps import Counters, RunStep, unroll

log = logging.getLogger(__name__)
output_log = logging.getLogger("mrctl.worker_output")  # the job's own printed lines

HOUSEKEEPING_S = 0.1  # leases, events, memory: looked at this often (or at once on a failure)
TICK_GAP_S = 0.005  # the shortest time between two ticks woken by commits
WINDOW_MIN = 8 << 20  # input bytes queued ahead, whatever the chunk size: tiny tasks get a deep window
FEED_BATCH = 256  # map tasks queued per round trip
# Map tasks queued or running at once, whatever their bytes: a waiting task's record costs Redis
# a few hundred bytes beside its chunk, so a window of 8 MB of one-line chunks was a million
# records (a 16 MiB Redis full before the first claim). 4096 keep 2 workers busy through
# several ticks at thousands of tasks a second.
TASKS_AHEAD = 4096

_EVENT_LOG = {"retry": logging.WARNING, "refused": logging.WARNING, "failed": logging.ERROR}


@dataclass
class Master(ProgressMixin):
    spec: JobSpec
    broker: Broker
    job_id: str
    clock: Callable[[], float] = time.monotonic
    window: int = 0  # input bytes held in Redis at once; 0: 2 chunks per worker, at least WINDOW_MIN
    t0: float | None = None  # when the run started (cluster start-up counts as "starting")
    lease_s: float = 10.0  # published with the job: how long a silent worker keeps its task
    worker_output: bool = False  # workers ship what the job's code prints; the master logs it

    def __post_init__(self) -> None:
        self.window = self.window or max(WINDOW_MIN, 2 * self.spec.workers * self.spec.chunk_size)
        self.t0 = self.clock() if self.t0 is None else self.t0
        self.phase = "starting"
        self.phase_times: dict[str, list[float]] = {"starting": [0.0, 0.0]}  # this step's
        self._phase_totals: dict[str, float] = {}  # seconds per phase over every step
        self.plan: list[ChunkRef] = []  # the first step's input chunks
        self._reader = ChunkReader()  # reads them in order, a file open at a time
        self.map_total = 0  # this step's map tasks
        self.fed = 0
        self._lines_fed: dict[int, int] = {}  # lines fed so far, by input (ChunkRef.input)
        self._events: deque[Event] = deque(maxlen=50)  # the views'
        self.journal: deque[Event] = deque(maxlen=EVENTS_KEPT)  # the history's
        self.book = AttemptBook()  # every attempt's start and end, for the history
        self.barriers: list[float] = []  # when each step's map phase ended
        self._stats: dict[str, int] = {}
        self._finished: list[dict[str, int]] = []  # the stats of each finished step
        self.step_seconds: list[tuple[str, float]] = []  # (label, seconds) of each finished step
        self.steps_done: list[StepTasks] = []  # the tasks of each finished step
        self.killed = 0
        self.backups = 0  # backup attempts queued
        self._next_housekeeping = 0.0
        self._housekept = False
        self._last_tick = 0.0
        self.job = self.job_id  # the current step's job in Redis
        # what leaves Redis past its high-water mark
        self.spiller = Spiller(self.broker, SpillStore(self.job_id, self._phase_share))
        self._source = ("", "")  # a later step's input: (REDUCE or MAP, the step before's label)
        self._limit, self._input_cap = 0, 1 << 62  # Redis maxmemory, read by start()
        self.step = RunStep(1, 1, self.spec.program[0].steps[0])
        self._order: Iterator[RunStep] = iter(())
        self._reset_step()

    def _reset_step(self) -> None:
        self.fed = 0
        self._fed_bytes = 0
        self._last_event = "0-0"
        self._last_output = "0-0"
        self._stats = {}
        self.backed_up: set[str] = set()  # map tasks considered for a speculative backup (once)
        self._bad_seen: dict[str, list[SkippedRecord]] = {}  # map tid -> its skipped records shown
        self._step_started = self.elapsed()

    # -- phases ---------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def set_phase(self, phase: str) -> None:
        now = self.elapsed()
        begun = self.phase_times[self.phase][0]
        self._phase_totals[self.phase] = self._phase_totals.get(self.phase, 0.0) + now - begun
        self.phase_times[self.phase][1] = now
        self.phase_times[phase] = [now, now]
        self.phase = phase
        log.debug("phase: %s", phase)

    def _phase_share(self) -> float:
        """The share of this phase's tasks committed (1.0 between phases)."""
        total, done = {"map": (self.map_total, "maps_done"),
                       "reduce": (self.step.spec.reducers, "reduces_done")}.get(self.phase, (0, ""))
        return self._stats.get(done, 0) / total if total else 1.0

    def phase_seconds(self) -> tuple[tuple[str, float], ...]:
        """Seconds in each phase, summed over the steps so far (the current phase included)."""
        totals = dict(self._phase_totals)
        now = self.elapsed()
        totals[self.phase] = totals.get(self.phase, 0.0) + now - self.phase_times[self.phase][0]
        return tuple((p, round(t, 3)) for p, t in totals.items())

    def _redis_clock_offset(self, readings: int = 3) -> float:
        """Redis's clock (seconds) at the run's second 0, for the attempts it times: of a few
        readings, the one with the shortest round trip, set at its midpoint (so off by half
        that round trip at most, a stall of this process between two calls notwithstanding)."""
        best: tuple[float, float] | None = None
        for _ in range(readings):
            before = self.elapsed()
            redis_s = self.broker.now_ms() / 1000
            after = self.elapsed()
            if best is None or after - before < best[0]:
                best = (after - before, redis_s - (before + after) / 2)
        return best[1]

    def start(self) -> None:
        """Plan the input and publish the first step (settings and code) for the workers."""
        self.plan = plan_chunks(self.spec.inputs, self.spec.chunk_size, self.spec.input_formats)
        self.book.offset_s = self._redis_clock_offset()
        self._limit = self.broker.memory().limit
        # A chunk in flight is in Redis twice at moments: stored, and in its claim's reply buffer
        self._input_cap = self._limit // 6 if self._limit else 1 << 62
        if self._limit:  # the input window takes at most an eighth of Redis (a quarter, doubled)
            self.window = min(self.window, self._limit // 8)
        self._order = unroll(self.spec.program, self.spec.params, self._last_counters)
        self._begin(next(self._order))
        log.info("job %s: %d map tasks over %d input files, %d reducers",
                 self.job_id, len(self.plan), len(self.spec.inputs), self.step.spec.reducers)

    def _begin(self, step: RunStep, previous: tuple[str, RunStep, int] | None = None) -> None:
        """Publish `step` as the cluster's current job; a later step's map tasks take the
        previous step's (job, step, outputs) outputs as their input."""
        self.step, self.job = step, self.job_id if len(self.spec.program) == 1 and step.planned == 1 \
            else keys.step_job(self.job_id, step.number)
        self._reset_step()
        spec, run = self.spec, step.spec
        self.map_total = len(self.plan) if previous is None else previous[2]
        self.spiller.begin_step(self.job, run.reducers, self._limit)
        meta = JobMeta(
            name=spec.name, run=self.job_id, state="running", created=time.time(),
            module=run.module.name, module_file=display_path(run.module),
            mapper=run.mapper or "", reducer=run.reducer or "", combiner=run.combiner or "",
            reducers=run.reducers, map_tasks=self.map_total, max_attempts=spec.max_attempts,
            task_timeout=spec.task_timeout, lease_s=self.lease_s, encoding_errors=spec.encoding_errors,
            bad_records=spec.bad_records.policy, bad_records_max=spec.bad_records.max,
            sort_values=run.sort_values, speculative=spec.speculative, worker_output=self.worker_output,
            params={**spec.params, **run.params},
            step=step.number, steps=step.planned, step_name=run.name, iteration=step.iteration,
            iterations=step.iterations, previous_counters=_counters_list(self._last_counters(1)),
            job_counters=_counters_list(self._last_counters(len(self._finished))),
        )
        self.broker.publish_job(self.job, meta, self._code)
        if previous is None:
            return  # the first step's map phase begins at the first tick (after start-up)
        job, before, outputs = previous
        kind = REDUCE if before.spec.reducers else MAP  # whose outputs it reads
        self._source = (kind, before.label())
        # outputs still in Redis move into their map tasks there; those on disk come back a
        # window at a time, each with its task (Spiller.feed_carried, each tick)
        on_disk = self.spiller.carried()
        self.broker.add_step_tasks(self.job, job, kind == MAP,
                                   {i: self._step_fields(i) for i in range(outputs) if i not in on_disk})
        self.spiller.feed_carried(self._step_fields)
        self.fed = outputs
        self.broker.drop_job(job)  # its outputs are now this step's chunks
        self._enter_map()
        if step.planned > 1:
            log.debug("%s: %d map tasks, %d reducers", step.label(), self.map_total, run.reducers)

    def _step_fields(self, i: int) -> dict[str, Any]:
        """A later step's map task i's fields: it reads output i of the step before."""
        kind, label = self._source
        return {"format": "pairs", "source": f"output {task_id(kind, i)} of {label}"}

    @functools.cached_property
    def _code(self) -> dict[str, str]:
        """Every job module of the program and the modules beside them that they import
        (mrctl.spec.job_files), by file name, read once for all its steps."""
        return job_files.bundle(dict.fromkeys(s.module for g in self.spec.program for s in g.steps))

    def _enter_map(self) -> None:
        self._step_started = self.elapsed()
        self.set_phase("map")
        self.phase_times = {"map": self.phase_times["map"]}  # the last step's reduce is over
        self.broker.set_meta(self.job, phase="map")

    def _advance(self) -> bool:
        """The current step is done: start the next one, if any (False: the job is done)."""
        self._drain_events()
        self.take_attempts()
        if self.worker_output:
            self._drain_output()
        self._finished.append(self._stats)
        self.steps_done.append(self.step_tasks())
        self.step_seconds.append((self.step.label(), round(self.elapsed() - self._step_started, 3)))
        step = next(self._order, None)
        if step is None:
            return False
        outputs = self.step.spec.reducers or self.map_total
        self._begin(step, (self.job, self.step, outputs))
        return True

    def step_tasks(self) -> StepTasks:
        """The current step's tasks, from its stats in Redis."""
        step = self.step
        return StepTasks.of(step.number, step.spec.name, self._stats, self.map_total, step.spec.reducers)

    def _last_counters(self, steps: int) -> Counters:
        """The job's own counters of the last `steps` finished steps, summed."""
        total: dict[tuple[str, str], int] = {}
        for stats in self._finished[len(self._finished) - steps:] if steps else ():
            for group, name, value in user_counters(stats):
                total[group, name] = total.get((group, name), 0) + value
        return total

    def tick(self) -> bool:
        """One step of the master loop; True once every reduce task has committed."""
        if self.phase == "starting":
            self._enter_map()
        self._stats = self.broker.stats(self.job)
        self.spiller.relieve(self.phase, last_step=self.step.number == self.step.planned)
        # A commit wakes the master; what no commit changes waits for its pace (a failed
        # task shows in the stats at once, so it is looked at at once)
        if self.clock() >= self._next_housekeeping or self._stats.get("failures", 0):
            self._next_housekeeping = self.clock() + HOUSEKEEPING_S
            self._housekeeping()
        if self.spec.bad_records.exceeded(skipped := self._totals().get("bad_records", 0)):
            self.broker.set_meta(self.job, state="failed")  # workers stop claiming
            raise JobFailed(exceeded_message(self.spec.bad_records, skipped, self.bad_samples()))
        reducers = self.step.spec.reducers
        if self.phase == "map":
            self._feed(self._stats.get("bytes_done", 0))
            self.spiller.feed_carried(self._step_fields)
            if self.spec.speculative and self._housekept:
                self._speculate()
            if self._stats.get("maps_done", 0) == self.map_total:
                self.set_phase("barrier")
                self.barriers.append(self.elapsed())
                self.spiller.queue_reduces()  # spilled partitions come back a window at a time
                self.set_phase("reduce")
                self.broker.set_meta(self.job, phase="reduce")
        elif self.phase == "reduce":
            self.spiller.queue_reduces()
        self._housekept = False
        if self.phase == "reduce" and self._stats.get("reduces_done", 0) == reducers:
            return not self._advance()
        return False

    def _housekeeping(self) -> None:
        """Leases and timeouts, events and printed lines, a failed task (Redis's memory is the
        Spiller's, every tick)."""
        self._housekept = True
        self.broker.requeue_expired(self.job, self.spec.max_attempts, self.spec.task_timeout)
        self._drain_events()
        self.take_attempts()
        if self.worker_output:
            self._drain_output()
        if (meta := self.broker.meta(self.job)) is not None and meta.state == "failed":
            raise JobFailed(self.failure_message())

    def _feed(self, bytes_done: int) -> None:
        """Queue the next chunks while less than `window` bytes of input are held in Redis
        (back-pressure), at least one chunk per worker; a round trip per batch of chunks."""
        batch: list[tuple[str, dict[str, Any], bytes]] = []
        in_flight = self.fed - self._stats.get("maps_done", 0)
        while self.fed < self.map_total and in_flight < TASKS_AHEAD and (
                self._fed_bytes - bytes_done < self.window or (
                    in_flight < self.spec.workers  # a chunk a worker,
                    and self._fed_bytes - bytes_done < self._input_cap)):  # within a sixth of Redis
            ref = self.plan[self.fed]
            data = self._reader.read(ref)
            before = self._lines_fed.get(ref.input)  # by input: a file named twice starts over
            first_line = (lines_before(ref) if before is None and ref.start else before or 0) + 1
            # a compressed chunk is a whole file: its newline count is never used
            self._lines_fed[ref.input] = first_line - 1 + data.count(b"\n")
            name, tag = self.spec.input_of(ref.input)
            fields = {"kind": "map", "index": self.fed, "file": display_path(ref.path),
                      "name": display_path(name), "start": ref.start, "end": ref.end,
                      "first_line": first_line, **({"tag": tag} if tag is not None else {}),
                      **ref.fmt.to_fields()}
            batch.append((map_tid(self.fed), fields, data))
            self.fed += 1
            in_flight += 1
            self._fed_bytes += len(data)
            if len(batch) == FEED_BATCH:
                self.broker.add_map_tasks(self.job, batch)
                batch = []
        if batch:
            self.broker.add_map_tasks(self.job, batch)

    def _speculate(self) -> None:
        """Near the end of the map phase (at least 75% of maps committed, none left queued),
        give each map attempt running much longer than the mean one backup attempt; the first
        of the two to commit wins and the other is refused (speculative execution)."""
        done, total = self._stats.get("maps_done", 0), self.map_total
        if not done or self.fed < total or done < 0.75 * total:
            return
        mean_s = self._stats.get("map_ms", 0) / done / 1000
        threshold_ms = 1000 * max(3 * mean_s, 1.0)
        attempts, now = self.broker.running_attempts(self.job, self.spec.task_timeout)
        if done + len({tid for tid, _, _ in attempts}) < total:
            return  # maps are still queued: workers are not idle yet
        for tid, attempt, claimed_ms in attempts:
            if is_map(tid) and tid not in self.backed_up and now - claimed_ms > threshold_ms:
                self.backed_up.add(tid)
                if not self.broker.add_backup(self.job, tid):
                    continue  # it ended (or was requeued) since it was read
                self.backups += 1
                self.add_event("speculative", f"{tid} attempt {attempt} has run {(now - claimed_ms) / 1000:.1f}s "
                               f"(mean {mean_s:.2f}s): backup attempt queued")
                log.info("speculative: backup of %s queued", tid)

    def finish(self, status: str) -> None:
        self.broker.set_meta(self.job, state=status, phase="done")
        self.broker.wake_workers()  # a burst worker returns now, not at its next look

    def wait(self, timeout: float) -> None:
        """Between ticks: until an attempt commits or fails (the next tick refills the window
        at once), or `timeout` seconds for leases, supervision and the view. Ticks are at
        least TICK_GAP_S apart, so that thousands of tiny commits a second cost the master a
        tick per batch of them, not one each (its CPU is the workers' on a small machine)."""
        if self.broker.wait_for_progress(self.job, timeout):
            time.sleep(max(0.0, self._last_tick + TICK_GAP_S - self.clock()))
        self._last_tick = self.clock()

    def output_pairs(self) -> Iterator[tuple[Any, Any]]:
        """Every reduce output pair, merged in key order; for a map-only job, every map
        output pair in input order (one map task's blob at a time, decoded a pair at a time)."""
        if self.step.spec.reducers == 0:
            return self._map_outputs()
        return self.spiller.output_pairs()  # streamed from disk: the master's memory stays flat

    def close(self) -> None:
        """Remove what was spilled to the master's disk."""
        self._reader.close()
        self.spiller.store.close()

    def _map_outputs(self) -> Iterator[tuple[Any, Any]]:
        for index in range(self.map_total):
            yield from self.spiller.map_output_pairs(index)

    def take_attempts(self) -> None:
        """Move the attempt log's new entries out of Redis into the book."""
        self.book.add(self.step.number, self.broker.take_attempt_log(self.job))

    def _drain_events(self) -> None:
        for eid, e in self.broker.events(self.job, self._last_event):
            self._last_event = eid
            text = f"{e.get('tid')} attempt {e.get('attempt')} on {e.get('worker')}: {e.get('msg')}"
            self.add_event(e.get("kind", "info"), text)
            log.log(_EVENT_LOG.get(e.get("kind", ""), logging.INFO), "%s", text)

    def _drain_output(self) -> None:
        """Log what the job's code printed, as `[worker-2 m:3] line` (the CLI shows it)."""
        for eid, o in self.broker.output_lines(self.job, self._last_output):
            self._last_output = eid
            output_log.info("[%s %s] %s", o.get("worker"), o.get("tid"), o.get("line"))

    def worker_lost(self, exit: WorkerExit) -> bool:
        """Requeue at once every attempt a dead worker held (the one it ran, the rest of its
        batch of tiny tasks, those it had claimed with its last commit), instead of waiting
        for their leases; returns whether
        the worker had done any work (held a task, or finished one).

        Safe against a stale view: the fail script only ends the attempt if it is still the
        current, running one.
        """
        held = self.broker.attempts_of(self.job, exit.name)  # from the tasks: its beats may lag
        # Out of memory is the code's doing (counts toward max_attempts), but only a lone held
        # attempt can be blamed for it: a batch's tasks all end lost (any other death is lost
        # too), and each runs alone on its next attempt (lua.CLAIM), where a real culprit is
        # blamed by itself.
        kind = "oom" if exit.oom and len(held) == 1 else "lost"
        for tid, attempt in held:
            self.broker.fail_attempt(self.job, tid, attempt, self.spec.max_attempts,
                                     f"worker {exit.name} {exit.reason}", "", kind)
        info, _, _ = self.broker.worker_rows()
        return bool(held) or int(info.get(exit.name, {}).get("tasks_done") or 0) > 0

    def worker_replaced(self, exit: WorkerExit, replacement: str) -> None:
        news = f"{exit.name} {exit.reason}; started {replacement}"
        log.warning("%s", news)
        self.add_event("replaced", news)

    def add_event(self, kind: str, message: str) -> None:
        event = Event(self.elapsed(), kind, message)
        self._events.append(event)
        self.journal.append(event)


def _counters_list(counters: Counters) -> tuple[tuple[str, str, int], ...]:
    """Counters for a step's meta (JobMeta): (group, name, value), sorted."""
    return tuple(sorted((g, n, v) for (g, n), v in counters.items()))
