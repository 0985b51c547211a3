"""Where everything of a run's timeline goes: rows, bars and marks, a pure function of its
RunRecord (plain data; mrctl.observe.timeline draws it, the web page and the tests read it)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mrctl.observe.record import Attempt, RunRecord

# How an attempt's outcome is drawn: error, timeout and oom all count toward max_attempts and
# are one colour (the error is in `mrctl show`); a released attempt (given back unstarted) is
# drawn like a cancelled one: it did no work that counts.
OUTCOME_CLASS = {"committed": "committed", "error": "failed", "timeout": "failed", "oom": "failed",
                 "lost": "lost", "refused": "refused", "cancelled": "cancelled", "released": "cancelled",
                 "running": "running"}

_KILLED = re.compile(r"chaos: killed (\S+)")
_REPLACED = re.compile(r"^(\S+) .*; started (\S+)$")


@dataclass(frozen=True)
class Bar:
    """One attempt: `start` and `width` in seconds since the run started."""

    row: int
    start: float
    width: float
    phase: str  # map | reduce
    outcome: str  # committed | failed | lost | refused | cancelled | running
    backup: bool
    tid: str
    attempt: int
    step: int


@dataclass(frozen=True)
class Mark:
    """Something that happened to a worker at an instant (a chaos kill, a replacement's start)."""

    at: float
    row: int
    worker: str


@dataclass(frozen=True)
class Layout:
    rows: tuple[str, ...]  # worker names, top to bottom
    bars: tuple[Bar, ...]
    barriers: tuple[float, ...]  # each step's shuffle barrier
    kills: tuple[Mark, ...]  # on the killed worker's row
    replacements: tuple[Mark, ...]  # on the new worker's row, when it was started
    end: float  # the right edge: the run's end (or the last thing drawn, if later)


def layout(run: RunRecord) -> Layout:
    """Where everything of `run` goes. Rows are the workers in the order they first appear (a
    first attempt, or a replacement's start); a replacement is a new worker and has its own row.
    An attempt still running when the run ended reaches to the run's end."""
    kills = [(e.at, m.group(1)) for e in run.events if e.kind == "chaos" and (m := _KILLED.search(e.message))]
    started = [(e.at, m.group(2)) for e in run.events
               if e.kind == "replaced" and (m := _REPLACED.match(e.message))]
    first_seen: dict[str, float] = {}
    for at, worker in [*((a.start, a.worker) for a in run.attempts), *started, *kills]:
        first_seen[worker] = min(at, first_seen.get(worker, at))
    rows = tuple(sorted(first_seen, key=lambda w: (first_seen[w], _natural(w))))
    row_of = {w: i for i, w in enumerate(rows)}
    bars = tuple(_bar(a, row_of[a.worker], run.elapsed) for a in run.attempts)
    end = max([run.elapsed, *(b.start + b.width for b in bars), *(at for at, _ in kills)], default=0.0)
    return Layout(
        rows=rows, bars=bars, barriers=tuple(run.barriers),
        kills=tuple(Mark(at, row_of[w], w) for at, w in kills),
        replacements=tuple(Mark(at, row_of[w], w) for at, w in started), end=end,
    )


def _bar(a: Attempt, row: int, run_end: float) -> Bar:
    end = a.end if a.end is not None else max(run_end, a.start)
    return Bar(row, a.start, max(0.0, end - a.start), a.phase, OUTCOME_CLASS.get(a.outcome, "failed"),
               a.backup, a.tid, a.attempt, a.step)


def _natural(name: str) -> tuple:
    """worker-2 before worker-10."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
