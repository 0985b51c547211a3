"""Chaos mode for learners: kill random busy workers during a run and watch the recovery.

`--chaos kill=3` kills three workers, one every 2 seconds once the map phase has started;
`--chaos kill=5,every=1.5` sets the interval. Killed workers are replaced like any dead worker
(within the replacement budget), and the output must still be exact.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Collection
from dataclasses import dataclass

from mrctl.errors import SpecError
from mrctl.observe.snapshot import JobSnapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChaosPlan:
    kills: int = 0
    every_s: float = 2.0
    seed: int | None = None


def parse_chaos(text: str) -> ChaosPlan:
    """Parse `kill=N[,every=SECONDS][,seed=N]`."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("kill", "every", "seed"):
            raise SpecError(f"--chaos {text!r}: expected kill=N[,every=SECONDS][,seed=N]")
        fields[key.strip()] = value.strip()
    try:
        plan = ChaosPlan(int(fields.get("kill", "0")), float(fields.get("every", "2")),
                         int(fields["seed"]) if "seed" in fields else None)
    except ValueError:
        raise SpecError(f"--chaos {text!r}: expected kill=N[,every=SECONDS][,seed=N] "
                        "with whole numbers N") from None
    if plan.kills < 0 or plan.every_s <= 0:
        raise SpecError(f"--chaos {text!r}: kill must be >= 0 and every > 0")
    return plan


def busy_workers(snap: JobSnapshot, own: Collection[str]) -> list[str]:
    """The workers of `own` (the backend's: it can kill only those) running a task in `snap`:
    the ones a kill makes a learner watch recover. A worker that joined the cluster from
    elsewhere shows in the snapshot too, but is not the backend's to kill."""
    return [w.name for w in snap.workers if w.state in ("mapping", "reducing") and w.name in own]


class ChaosMonkey:
    """Decides, from snapshots, when to kill which busy worker."""

    def __init__(self, plan: ChaosPlan) -> None:
        self.plan = plan
        self.random = random.Random(plan.seed)
        self.killed: list[str] = []
        self.next_at: float | None = None

    def victim(self, snap: JobSnapshot, own: Collection[str]) -> str | None:
        """The worker to kill now, if any (a busy one of `own`, chosen at random)."""
        if len(self.killed) >= self.plan.kills or snap.phase not in ("map", "reduce"):
            return None
        if self.next_at is None:
            self.next_at = snap.elapsed + self.plan.every_s
        if snap.elapsed < self.next_at:
            return None
        busy = busy_workers(snap, own)
        if not busy:
            return None
        self.next_at = snap.elapsed + self.plan.every_s
        name = self.random.choice(busy)
        self.killed.append(name)
        log.warning("chaos: killing %s", name)
        return name
