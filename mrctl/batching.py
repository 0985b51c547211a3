"""How many tiny map tasks a worker claims at once.

A task of a few hundred bytes takes a fraction of a millisecond of work, less than the round
trip that claims and commits it; a worker then claims several queued map tasks in one CLAIM
(each its own attempt, lease, deadline and attempt-log entry, so fencing is per task, as for
one) and commits them in one round trip that also claims the next batch. The batch is sized
from what the worker measured: as many tasks as run in about BUDGET_S, at most MAX_TASKS, their
chunks at most MAX_BYTES, so that a big chunk or slow code still goes one task at a time and a
batch's tasks barely age between their claim and their start (leases and task_timeout deadlines
are set at the claim).

Known residue: when a task of a batch hangs until task_timeout, the tasks of its batch that had
finished, waiting for the batch's commit, reach their claim-time deadlines at the same moment;
the master's reaper may end them as timed out (counted toward max_attempts) before the worker,
interrupted, commits them (and always does if the hanging code ignores its interruption and the
worker is killed). Each then runs alone on its next attempt (a retry is never batched,
lua.CLAIM), so a task is charged that way at most once; the hanging one is blamed alone.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_TASKS = 32
MAX_BYTES = 256 << 10
BUDGET_S = 0.02  # a batch's wall time, measured: tiny enough that its queue stays fair
# A batch's wall-time slice: before starting its next task, a worker whose batch has run longer
# than this commits the tasks it finished and releases the unstarted rest (requeued at the
# front, counted nowhere: lua._FAIL_ATTEMPT 'released'), so that a slow task delays no other
# task for longer than it takes itself; the sizer then claims one task at a time for a while.
# 2.5x BUDGET_S: a batch measured fast is not cut by ordinary jitter.
SLICE_S = 0.05


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
