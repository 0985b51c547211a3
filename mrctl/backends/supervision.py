"""One supervision policy for every backend: a dead worker is replaced, always — unless workers
keep dying before doing any work, which no replacement will cure (a broken image, a worker that
cannot reach Redis, a job module that kills the process on import).

Like Spark's executor-failure limit over a validity interval: more than `max_restarts` deaths
of workers that never held a task, within `window_s` seconds, is a crash loop and fails the job
at once, with the end of the last dead worker's log. A worker that dies on a task did work; its
task's own limits (max_attempts, lost attempts) bound that case.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mrctl.backends import WorkerExit
from mrctl.errors import InfraError

DEFAULT_MAX_RESTARTS = 5
WINDOW_S = 60.0


@dataclass
class CrashLoopGuard:
    max_restarts: int = DEFAULT_MAX_RESTARTS
    window_s: float = WINDOW_S
    clock: Callable[[], float] = time.monotonic
    idle_deaths: deque = field(default_factory=deque)

    def check(self, exit: WorkerExit, did_work: bool) -> None:
        """Record a death; InfraError when it completes a crash loop."""
        if did_work:
            return
        now = self.clock()
        self.idle_deaths.append(now)
        while self.idle_deaths and self.idle_deaths[0] < now - self.window_s:
            self.idle_deaths.popleft()
        if len(self.idle_deaths) > self.max_restarts:
            log = f"; its log ends:\n{exit.log.rstrip()}" if exit.log.strip() else ""
            raise InfraError(
                f"workers keep dying before doing any work ({len(self.idle_deaths)} within "
                f"{self.window_s:g}s, more than max_worker_restarts {self.max_restarts}): a crash "
                f"loop that replacing them will not cure. The last one, {exit.name}, {exit.reason}{log}")
