"""The worker loop: claim a task, run the job's code on it, commit under its fencing token.

A heartbeat process (mrctl.worker.heartbeat) renews the task's lease while user code runs, even when
that code holds the GIL, and enforces task_timeout: it first interrupts the task (TaskTimeout
raised in the main thread), and if the user code does not give way within a grace period it
kills the worker so that its supervisor starts a fresh one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mrctl.broker import Broker, Claim, ClaimRequest, MapCommit, keys
from mrctl.broker.meta import JobMeta
from mrctl.errors import InfraError, bounded_message, bounded_traceback
from mrctl.io.formats import ChunkFormat
from mrctl.io.task_ids import attempt_ref, is_map, tid_index
from mrctl.job import StepPlace, TaskContext, with_context
from mrctl.worker import batching, tasks
from mrctl.worker import runs as worker_runs
from mrctl.worker.heartbeat import HeartbeatProcess, KeeperLost, KeeperOptions
from mrctl.worker.loader import JobClasses, job_classes, load_module
from mrctl.worker.sorted_runs import SortedRuns
from mrctl.worker.user_output import OutputCapture

log = logging.getLogger(__name__)

class TaskTimeout(tasks.TaskInterrupted):
    """Raised inside user code when its task has run longer than task_timeout."""


class TaskCancelled(tasks.TaskInterrupted):
    """Raised inside user code when another attempt of its task (a speculative backup, or the
    original it backed up) committed first."""


class AttemptEnded(Exception):
    """The attempt was ended by others (reaped, failed, beaten by another) while the worker
    waited for its input: nothing to report, its task runs elsewhere."""


FEED_WAIT_S = 1.0  # a fed reduce task looks whether its attempt still lives this often while it waits


@dataclass
class _Current:
    job: str | None = None
    tid: str | None = None
    attempt: int = 0
    user_code: bool = False  # the job's code is running: only then may it be interrupted


@dataclass
class WorkerOptions:
    lease_s: float = 10.0
    poll_s: float = 0.5  # longest wait for a wake token (keys.wake) before looking again
    burst: bool = False  # return when the current job has ended (tests, inline use)
    max_tasks: int | None = None
    redis_patience_s: float = 30.0  # exit when Redis is unreachable for this long
    interrupt_main: bool = True  # deliver TaskTimeout via a signal (main thread only)
    parent_pid: int | None = None  # local backend: end when this master process is gone
    process_per_run: bool = False  # each run's tasks in a fresh child process (mrctl.worker.runs)


@dataclass
class Worker:
    broker: Broker
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    options: WorkerOptions = field(default_factory=WorkerOptions)

    def __post_init__(self) -> None:
        self.tasks_done = 0
        self.current = _Current()
        self.beats: HeartbeatProcess | None = None
        self._capture: OutputCapture | None = None
        self._stop = threading.Event()
        self._loaded: tuple[str, JobClasses, dict[str, str]] | None = None
        self._job: str | None = None  # the job this worker serves (mrctl:current, as last read)
        self._next: list[Claim] = []  # the next tasks of that job, claimed with the last commit
        self._sizer = batching.BatchSizer()  # how many tiny tasks a claim takes
        self._watch = batching.BatchWatch()  # commits a batch's finished tasks while one runs long
        self._announced: tuple[str, str, int] | None = None  # (job, tid, attempt) the keeper knows
        self._reannounce = False  # a task of the batch was interrupted: tell the keeper afresh
        self._settings: tuple[str, JobMeta | None] | None = None  # that job's meta, read once
        self._one_run = False  # this process serves one run, then ends (mrctl.worker.runs)
        self._run: str | None = None  # that run, once seen

    # -- driver ---------------------------------------------------------------------------

    def run(self) -> int:
        """Work until stopped (or, in burst mode, until the current job has ended)."""
        signals = self.options.interrupt_main and threading.current_thread() is threading.main_thread()
        if signals:
            signal.signal(signal.SIGUSR1, self._on_interruption)
        try:
            self.broker.heartbeat(self.name, {"state": "idle", "tasks_done": 0, "pid": os.getpid()})
        except InfraError as exc:  # announce readiness at once; the keeper beats from now on
            log.warning("first heartbeat failed: %s", exc)
        keeper = KeeperOptions(self.broker.url, self.name, os.getpid(), signal_worker=signals,
                               master_pid=self.options.parent_pid)
        try:
            with HeartbeatProcess(keeper) as self.beats:
                self.beats.wait_ready()  # no claim before leases can be renewed
                log.info("worker %s ready", self.name)
                return worker_runs.serve(self) if self.options.process_per_run else self._loop()
        except KeeperLost as exc:
            log.error("%s: exiting, so that a fresh worker replaces this one", exc)
            return 3
        finally:
            if signals:
                signal.signal(signal.SIGUSR1, signal.SIG_DFL)

    def _loop(self) -> int:
        down_since: float | None = None
        try:
            while not self._stop.is_set():
                self.beats.check()  # type: ignore[union-attr]
                try:
                    worked = self.tick()
                    down_since = None
                except InfraError as exc:
                    down_since = down_since or time.monotonic()
                    if time.monotonic() - down_since > self.options.redis_patience_s:
                        log.error("giving up: %s", exc)
                        return 3
                    log.warning("%s; retrying", exc)
                    worked = False
                    time.sleep(1.0)
                if worked is None:  # burst mode and the job is over
                    return 0
                if self.options.max_tasks and self.tasks_done >= self.options.max_tasks:
                    return 0
                if not worked and not self._stop.is_set():
                    self.broker.wait_for_task(self.options.poll_s)  # woken by a queued task
        finally:
            self._stop.set()
            if self._job is not None and self._next:  # claimed with the last commit, never started:
                with contextlib.suppress(InfraError):  # released at once (counted nowhere), else
                    self.broker.release_attempts(  # their leases run out
                        self._job, [(c.tid, c.attempt) for c in self._next], f"worker {self.name} stopped")
        return 0

    def stop(self) -> None:
        self._stop.set()

    def serve_one_run(self) -> None:
        """Serve one run alone (this process is a run's, mrctl.worker.runs): the first job seen
        makes the run; the loop ends when another run, or none, is current. The keeper
        signals this process from now on."""
        self._one_run = True
        self._report(pid=os.getpid())

    def _run_ends(self, current: str | None) -> bool:
        """In a run's process, whether `current` ends the run it serves (the first job it sees
        starts one); steps of the run go on in it."""
        if not self._one_run:
            return False
        if self._run is None:
            self._run = None if current is None else keys.run_of(current)
            return False
        return current is None or keys.run_of(current) != self._run

    def tick(self) -> bool | None:
        """One step: claim and run a task, or a batch of tiny map tasks. True if a task ran (or
        the job changed: look again at once), False if there was none, None if a burst worker
        is done.

        The claim script checks that the job is running, and the commit of a batch's map tasks
        claims the next batch in the same round trip, so the usual step is one round trip; the
        current job and its state are read only when no task was claimed.
        """
        job = self._job
        if job is not None and (meta := self._job_meta(job)):
            claims, self._next = self._next, []
            if not claims and (request := self._claim_request(meta)) is not None:
                claims = self.broker.claim_tasks(job, request)
            if claims:
                self._run_batch(job, meta, claims)
                return True
        current = self.broker.current_job()
        if current != job:
            if self._run_ends(current):
                return None  # this run's process is done: the main process forks one for the next
            self._job = current
            return current is not None
        if job is None:
            return False
        meta = self.broker.meta(job)
        state = meta.state if meta else ""
        if state != "running":  # ended; or a finished step, its keys dropped ("")
            return None if self.options.burst and state else False
        return False

    def _job_meta(self, job: str) -> JobMeta | None:
        """A job's settings, read once per job (they do not change while it runs)."""
        if self._settings is None or self._settings[0] != job:
            self._settings = (job, self.broker.meta(job))
        return self._settings[1]

    # -- one task -------------------------------------------------------------------------

    def _claim_request(self, meta: JobMeta, committing: int = 0) -> ClaimRequest | None:
        """The next claim (with a commit of `committing` tasks, or alone): as many tasks as the
        measured pace calls for (mrctl.worker.batching), none when this worker is about to stop."""
        left = None if self.options.max_tasks is None else self.options.max_tasks - self.tasks_done - committing
        if (left is not None and left <= 0) or self._stop.is_set():
            return None
        # speculative execution judges each attempt by its own claim time and prompt commit
        size = 1 if meta.speculative else self._sizer.size(left)
        return ClaimRequest(self.name, self._lease_s(meta), meta.task_timeout, size,
                            batching.MAX_BYTES)

    def _lease_s(self, meta: JobMeta) -> float:
        """The job's lease (published by the master), else this worker's default."""
        return meta.lease_s or self.options.lease_s

    def _classes(self, job: str) -> JobClasses:
        if self._loaded is None or self._loaded[0] != job:
            meta, code = self.broker.load_job(job)
            if not meta:  # a step that ended (a backup that lost) and whose keys were dropped
                raise TaskCancelled(f"job {job} has ended")
            # named as the user's file (a path), so tracebacks and JobCodeErrors point there
            module = load_module(meta.module_file or meta.module, code[meta.module], meta.run or job, siblings=code)
            classes = job_classes(module, meta.mapper or None, meta.reducer or None, meta.combiner or None)
            self._loaded = (job, classes, meta)
        return self._loaded[1]

    def _run_batch(self, job: str, meta: JobMeta, claims: list[Claim]) -> None:
        """Run claimed tasks in order; the map tasks among them commit together, with the next
        claim, in one round trip. The keeper hears of the batch once (its tasks' leases, and
        one task_timeout from its start), and afresh after a task of it was interrupted. A
        batch past its slice (batching.SLICE_S) stops there: its unstarted tasks are released
        with the commit. The keeper hears the worker is idle however the batch ends."""
        started = time.perf_counter()
        self._announce(job, meta, claims[0], claims[1:])
        if len(claims) > 1:
            log.info("batch of %d tasks start: %s", len(claims),
                     " ".join(attempt_ref(c.tid, c.attempt) for c in claims))
        done = batching.BatchInFlight(claims, functools.partial(self._commit_early, job, meta))
        ran = len(claims)
        try:
            if len(claims) > 1:
                self._watch.watch(done, done.after_s(meta.task_timeout))
            for i, claim in enumerate(claims):
                # past its slice, or released by the batch's thread (a task of it ran long)
                if (i and time.perf_counter() - started > batching.SLICE_S) or not done.start(i):
                    ran = i
                    log.info("batch of %s ran %.0f ms: its %d unstarted tasks go back", claims[0].tid,
                             (time.perf_counter() - started) * 1000, len(claims) - i)
                    self._sizer.observe(time.perf_counter() - started, i)  # the next claim is smaller
                    break
                if i and self._reannounce:  # everything it still holds, the finished tasks too
                    self._announce(job, meta, claim, [*done, *claims[i + 1:]])
                self._run_claim(job, meta, claim, done, alone=len(claims) == 1)
            self._commit(job, meta, *done.close(ran))
            if done.count and ran == len(claims):
                self._sizer.observe(time.perf_counter() - started, len(claims))
        finally:
            self._watch.unwatch()
            done.close(ran)
            if not self._next:  # idle now; else the next batch's report replaces this one
                self._report(tid=None, attempt=0, held=[], user_code=False, tasks_done=self.tasks_done)

    def _announce(self, job: str, meta: JobMeta, first: Claim, held: list[Claim | MapCommit]) -> None:
        """Tell the keeper what this worker now runs (`first`) and holds besides."""
        self._announced, self._reannounce = (job, first.tid, first.attempt), False
        self._report(job=job, tid=first.tid, attempt=first.attempt, lease_s=self._lease_s(meta),
                     task_timeout=meta.task_timeout, user_code=True,
                     tasks_done=self.tasks_done, held=[attempt_ref(c.tid, c.attempt) for c in held])

    def _run_claim(self, job: str, meta: JobMeta, claim: Claim, done: batching.BatchInFlight,
                   alone: bool) -> None:
        """Run one task: a reduce commits at once, a map's commit joins `done` (the batch's)."""
        self.current = _Current(job, claim.tid, claim.attempt)
        self._capture = OutputCapture() if meta.worker_output else None
        log.log(logging.INFO if alone else logging.DEBUG, "task %s attempt %d start%s", claim.tid, claim.attempt,
                _describe_input(claim.fields))
        started = time.perf_counter()
        try:
            committed, records = self._execute(job, meta, claim, done)
        except (KeeperLost, InfraError):
            raise  # not the task's fault: the loop retries Redis or ends the worker; the
            # attempt's lease, no longer renewed, expires and the task runs elsewhere
        except AttemptEnded as exc:
            self._reannounce = True
            log.info("task %s: %s", claim.tid, exc)
        except TaskCancelled:
            self._reannounce = True
            log.info("task %s attempt %d cancelled: another attempt committed first", claim.tid, claim.attempt)
            self.broker.add_event(job, "cancelled", claim.tid, claim.attempt, self.name,
                                  "cancelled: another attempt committed first")
        except Exception as exc:
            self._reannounce = True
            self._report_failure(job, meta, claim, exc)
        else:
            if committed is not None:  # a reduce: committed (or refused) already
                self._log_commit(claim, committed, records, time.perf_counter() - started)
        finally:
            self.current = _Current(job)
            self._ship_output(job, claim)

    def _commit(self, job: str, meta: JobMeta, done: list[MapCommit], unstarted: list[Claim]) -> None:
        """Commit the batch's map tasks, each fenced by its attempt, claiming the next batch,
        and release its unstarted tasks (after the claim: other workers take them)."""
        if not done and not unstarted:
            return
        oks, self._next = self.broker.commit_maps_then_claim(
            job, self.name, done, self._claim_request(meta, len(done)), [(c.tid, c.attempt) for c in unstarted],
            f"worker {self.name} released it unstarted: its batch ran past its slice")
        self._log_commits(done, oks, alone=len(done) == 1)

    def _commit_early(self, job: str, meta: JobMeta, done: list[MapCommit], unstarted: list[Claim]) -> None:
        """While a task of a batch runs long, commit the batch's finished tasks and release its
        unstarted ones (batching.BatchInFlight)."""
        running = self.current.tid or "a task"
        log.info("batch: %s runs long: committing %d finished tasks, releasing %d unstarted", running,
                 len(done), len(unstarted))
        oks, _ = self.broker.commit_maps_then_claim(
            job, self.name, done, None, [(c.tid, c.attempt) for c in unstarted],
            f"worker {self.name} released it unstarted: {running} of its batch ran long")
        self._log_commits(done, oks, alone=False)

    def _log_commits(self, done: list[MapCommit], oks: list[bool], alone: bool) -> None:
        for c, ok in zip(done, oks, strict=True):
            self._log_commit(c, ok, c.counters.get("records_in", 0), c.counters.get("map_ms", 0) / 1000, alone)

    def _log_commit(self, claim: Claim | MapCommit, ok: bool, records: int, took: float, alone: bool = True) -> None:
        if ok:
            self.tasks_done += 1
            log.log(logging.INFO if alone else logging.DEBUG, "task %s attempt %d done: %d records in, %.2fs",
                    claim.tid, claim.attempt, records, took)
        else:
            log.warning("task %s attempt %d: commit refused (superseded by a newer attempt)",
                        claim.tid, claim.attempt)

    def _execute(self, job: str, meta: JobMeta, claim: Claim,
                 done: batching.BatchInFlight) -> tuple[bool | None, int]:
        """Run a task's code: a map's commit joins `done` (None: not committed yet), a reduce
        commits now. Returns (committed, records in)."""
        classes = self._classes(job)
        reducers = meta.reducers
        status = functools.partial(self.broker.add_event, job, "status", claim.tid, claim.attempt, self.name)
        if is_map(claim.tid):
            if claim.data is None:
                raise InfraError(f"the input chunk of {claim.tid} is missing from Redis")
            context = TaskContext(claim.tid, claim.attempt, meta.params, claim.fields.get("name"),
                                  claim.fields.get("tag") or None, step=_place(meta), status=status)
            combiner = with_context(classes.combiner, context) if classes.combiner else None
            started = time.perf_counter()
            with self._user_code():
                result = tasks.run_map(with_context(classes.mapper, context), combiner, claim.data,
                                       reducers, meta.encoding_errors,
                                       ChunkFormat.from_fields(claim.fields),
                                       skip_bad=meta.bad_records == "skip")
            counters = {"maps_done": 1, "records_in": result.records_in,
                        "map_records_out": result.records_out, "bytes_done": len(claim.data),
                        "decode_errors": result.decode_errors, "bad_records": result.bad_records,
                        "map_ms": int((time.perf_counter() - started) * 1000)}
            counters = {name: n for name, n in counters.items() if n}  # a tiny task's are mostly 0
            done.append(MapCommit(claim.tid, claim.attempt, result.blobs, counters, context.counters,
                                  _located(claim.fields, result.bad_samples)))
            return None, result.records_in
        context = TaskContext(claim.tid, claim.attempt, meta.params, step=_place(meta), status=status)
        # in _user_code: a timeout interrupts the feed and the merge as it does the job's code
        with SortedRuns() as runs, self._user_code():
            if claim.fields.get("feed"):  # too large for Redis at once: fed, onto this worker's disk
                self._take_feed(job, claim, runs)
                groups: Any = runs.groups()
            else:
                groups = tasks.merge_blobs(claim.data[i] for i in sorted(claim.data))
            result = tasks.run_reduce(with_context(classes.reducer, context), groups,
                                      sort_values=meta.sort_values)
        counters = {"reduces_done": 1, "records_out": len(result.pairs)}
        self._ship_output(job, claim)  # before the commit: the master may end the job right after it
        ok = self.broker.commit_reduce(job, tid_index(claim.tid), claim.attempt, self.name,
                                       tasks.pack_pairs(result.pairs), counters, context.counters)
        return ok, result.records_in

    def _take_feed(self, job: str, claim: Claim, runs: SortedRuns) -> None:
        """Take the attempt's feed of its partition (keys.feed) into sorted runs, until its end;
        the attempt ending meanwhile (reaped, failed, another attempt committed) ends this."""
        r, seq, taken = tid_index(claim.tid), 0, 0
        while (blob := self.broker.fed_blob(job, r, claim.attempt, seq, FEED_WAIT_S)) != b"":
            if blob is None:
                if not self.broker.attempt_live(job, claim.tid, claim.attempt):
                    raise AttemptEnded(f"attempt {claim.attempt} of {claim.tid} ended while it was fed its input")
                continue
            runs.add(blob)
            seq, taken = seq + 1, taken + len(blob)
        log.info("task %s attempt %d: %.1f MB fed, %d sorted runs on disk", claim.tid, claim.attempt,
                 taken / 1e6, runs.runs)

    @contextlib.contextmanager
    def _user_code(self) -> Iterator[None]:
        """Mark the span in which an interruption (timeout, cancellation) may be raised, and
        collect what the job's code prints when the run asked for it (--worker-output)."""
        self.current.user_code = True
        capture = self._capture
        try:
            with capture.capturing() if capture else contextlib.nullcontext():
                yield
        finally:
            # the keeper hears of it with the batch's end (_run_batch): an interruption it
            # sends meanwhile is ignored here (_on_interruption reads this flag)
            self.current.user_code = False

    def _ship_output(self, job: str, claim: Claim) -> None:
        if self._capture is not None and (lines := self._capture.take()):
            self.broker.add_output(job, self.name, claim.tid, claim.attempt, lines)

    def _report(self, **changes: object) -> None:
        if self.beats is not None:
            self.beats.report(**changes)

    def _report_failure(self, job: str, meta: JobMeta, claim: Claim, exc: Exception) -> None:
        # Bounded: an exception may carry megabytes (a whole partition's repr); the message and
        # traceback go to Redis, the master and the user's terminal.
        tb = bounded_traceback(exc)
        kind = "timeout" if isinstance(exc, TaskTimeout) else "error"
        text = bounded_message(exc)
        message = f"{text}{_describe_line(claim.fields, exc)}"
        log.error("task %s attempt %d failed: %s\n%s", claim.tid, claim.attempt, message, tb)
        self.broker.fail_attempt(job, claim.tid, claim.attempt,
                                 meta.max_attempts, message, tb, kind)

    # -- interruptions (from the heartbeat process) -------------------------------------

    def _on_interruption(self, signum: int, frame: object) -> None:
        """SIGUSR1 from the keeper: raise TaskTimeout or TaskCancelled in the user's code, if
        the interruption is for what runs it now. The keeper knows a batch by its first task:
        its timeout is the batch's (whichever task runs), its cancellation that task's own."""
        found = self.beats.interruption() if self.beats is not None else None
        cur = self.current
        if found is None or found[1:] != self._announced:
            return  # stale: about a batch (or task) that has ended
        if not cur.user_code or (found[0] == "cancel" and found[1:] != (cur.job, cur.tid, cur.attempt)):
            self._reannounce = True  # the keeper waits for its interruption to work: tell it anew
            return
        if found[0] == "cancel":
            log.info("task %s attempt %d: another attempt committed first; cancelling it", cur.tid, cur.attempt)
            raise TaskCancelled(f"another attempt of {cur.tid} committed first")
        raise TaskTimeout(f"task {cur.tid} exceeded task_timeout and was interrupted")


def _place(meta: JobMeta) -> StepPlace:
    """The task's step in a multi-step run, as the master published it."""
    return StepPlace(meta.step, meta.step_name, meta.iteration, _counters(meta.previous_counters),
                     _counters(meta.job_counters))


def _counters(counters: tuple[tuple[str, str, int], ...]) -> dict[tuple[str, str], int]:
    return {(group, name): value for group, name, value in counters}


def _describe_input(fields: dict[str, str]) -> str:
    if "file" not in fields:
        return ""
    return f" ({fields['file']} bytes {fields['start']}-{fields['end']})"


def _describe_line(fields: dict[str, str], exc: BaseException) -> str:
    """Where in its input a task's exception happened: the line, or the key being reduced."""
    if hasattr(exc, "mrctl_key"):
        return f" (reducing the key {tasks.key_excerpt(exc.mrctl_key)})"
    line = getattr(exc, "mrctl_line", None)
    if line is None or "first_line" not in fields:
        return ""
    return f" (at {fields['file']}, line {int(fields['first_line']) + line})"


def _located(fields: dict[str, str], samples: tuple[tuple[int, str], ...]) -> list[tuple[str, int, str]]:
    """Skipped records as (file, line, error), placed by the task's input position (the
    task's record leaves Redis when it commits: its samples carry where they are)."""
    file, first = fields.get("file", fields.get("source", "?")), int(fields.get("first_line", 1))
    return [(file, first + index, error) for index, error in samples]
