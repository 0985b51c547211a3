"""How many tiny map tasks a worker claims at once.

A task of a few hundred bytes takes a fraction of a millisecond of work, less than the round
trip that claims and commits it; a worker then claims several queued map tasks in one CLAIM
(each its own attempt, lease, deadline and attempt-log entry, so fencing is per task, as for
one) and commits them in one round trip that also claims the next batch. The batch is sized
from what the worker measured: as many tasks as run in about BUDGET_S, at most MAX_TASKS, their
chunks at most MAX_BYTES, so that a big chunk or slow code still goes one task at a time and a
batch's tasks barely age between their claim and their start (leases and task_timeout deadlines
are set at the claim).

A task that hangs (or is just slow) in a batch holds up no other task of it: past
EARLY_COMMIT_S a thread commits the tasks that have finished and releases those not started
(BatchInFlight, BatchWatch), well before the deadline they share with it (set at the claim), so only the
hanging task reaches its task_timeout and is blamed. (A hang in C code that holds the GIL stops
that thread too; then they end with it, as timed out, and run alone next time: a retry is never
batched, lua.CLAIM.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
C = TypeVar("C")  # a claim
T = TypeVar("T")  # a finished task

MAX_TASKS = 32
MAX_BYTES = 256 << 10
BUDGET_S = 0.02  # a batch's wall time, measured: tiny enough that its queue stays fair
# A batch's wall-time slice: before starting its next task, a worker whose batch has run longer
# than this commits the tasks it finished and releases the unstarted rest (requeued at the
# front, counted nowhere: lua._FAIL_ATTEMPT 'released'), so that a slow task delays no other
# task for longer than it takes itself; the sizer then claims one task at a time for a while.
# 2.5x BUDGET_S: a batch measured fast is not cut by ordinary jitter.
SLICE_S = 0.05
# A batch still running after this (at most a quarter of task_timeout) commits its finished
# tasks from a thread, without waiting for the task that holds it up.
EARLY_COMMIT_S = 1.0


@dataclass
class BatchSizer:
    """A moving average of a map task's wall time (its share of its batch, commit included),
    and the batch size it calls for. The first claim is one task: nothing is measured yet."""

    per_task_s: float | None = None
    weight: float = 0.3

    def observe(self, seconds: float, tasks: int) -> None:
        if tasks <= 0:
            return
        sample = seconds / tasks
        self.per_task_s = sample if self.per_task_s is None else (
            self.weight * sample + (1 - self.weight) * self.per_task_s)

    def size(self, limit: int | None = None) -> int:
        """Tasks for the next claim (at least 1; at most `limit` when given)."""
        n = 1 if self.per_task_s is None else int(BUDGET_S / max(self.per_task_s, 1e-6))
        n = max(1, min(MAX_TASKS, n))
        return n if limit is None else max(1, min(n, limit))


class BatchInFlight(Generic[C, T]):
    """A running batch: its claims, the one running, the finished ones waiting for the batch's
    commit. `flush_early` (from BatchWatch's thread, while a task of it runs long) hands `flush`
    the tasks finished so far and, the first time, the claims not started yet (which the batch
    then never starts), so that a task that hangs holds up no other task of its batch; `close`
    ends that and returns what is left to commit and to release."""

    def __init__(self, claims: list[C], flush: Callable[[list[T], list[C]], None]) -> None:
        self.count = 0  # every task that finished, committed early or not
        self._claims = claims
        self._running = -1
        self._released = False
        self._closed = False
        self._finished: list[T] = []
        self._lock = threading.Lock()
        self._flush = flush

    @staticmethod
    def after_s(task_timeout: float) -> float:
        """When a batch is first flushed early: well before task_timeout (a quarter), never
        before 2 slices (after which the batch starts no task anyway)."""
        return max(2 * SLICE_S, min(EARLY_COMMIT_S, task_timeout / 4))

    def start(self, i: int) -> bool:
        """Whether to run claim i now (False: flush_early released it)."""
        with self._lock:
            if self._released:
                return False
            self._running = i
            return True

    def append(self, item: T) -> None:
        with self._lock:
            self._finished.append(item)
            self.count += 1

    def __iter__(self) -> Iterator[T]:
        with self._lock:
            return iter(list(self._finished))

    def close(self, unstarted_from: int) -> tuple[list[T], list[C]]:
        """No more early flushes (waiting for one under way): (the finished tasks to commit,
        the claims from `unstarted_from` on to release, unless flush_early released them)."""
        with self._lock:
            self._closed = True
            rest, self._finished = self._finished, []
            return rest, [] if self._released else self._claims[unstarted_from:]

    def flush_early(self) -> None:
        with self._lock:
            unstarted = [] if self._released else self._claims[self._running + 1:]
            if self._closed or (not self._finished and not unstarted):
                return
            finished, self._finished = self._finished, []
            try:
                self._flush(finished, unstarted)
                self._released = True
            except Exception as exc:  # Redis away, say: the batch's own commit tries again
                log.warning("early commit of %d finished tasks failed: %s", len(finished), exc)
                self._finished[:0] = finished


class BatchWatch:
    """A worker's one thread (started with its first batch of several tasks) that flushes the
    batch in flight (BatchInFlight.flush_early) once it has run `after_s`, and every `after_s`
    after that, until it is unwatched. Between batches it sleeps; a batch that ends in time
    costs it nothing but two attribute writes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._batch: BatchInFlight | None = None
        self._due = self._every = 0.0
        self._idle = False
        self._thread: threading.Thread | None = None

    def watch(self, batch: BatchInFlight, after_s: float) -> None:
        with self._cond:
            due = time.monotonic() + after_s
            # asleep, or waiting for a later time (a job with a longer task_timeout before):
            # wake it; else it wakes at its old due time and waits on for this one
            wake = self._idle or due < self._due
            self._batch, self._every, self._due = batch, after_s, due
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._run, name="batch-watch", daemon=True)
                thread.start()  # may raise (no thread to be had): the batch then ends as before
                self._thread = thread
            elif wake:
                self._cond.notify()

    def unwatch(self) -> None:
        with self._cond:
            self._batch = None

    def _run(self) -> None:
        with self._cond:
            while True:
                if self._batch is None:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                    continue
                if (delay := self._due - time.monotonic()) > 0:
                    self._cond.wait(delay)
                    continue
                batch, self._due = self._batch, self._due + self._every
                self._cond.release()  # the flush takes a round trip: watch and unwatch go on
                try:
                    batch.flush_early()
                finally:
                    self._cond.acquire()
