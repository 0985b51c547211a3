"""The live view on a terminal: rich renderables of a JobSnapshot (pure functions) and the
reporter that redraws them. Only a run shown on a terminal imports this module, and rich with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from mrctl.observe.snapshot import JobSnapshot, PhaseProgress
from mrctl.observe.views import PHASE_WORDS, counter_lines, progress_text, summary_lines

EVENT_STYLE = {"retry": "yellow", "refused": "magenta", "failed": "bold red", "lost": "red",
               "timeout": "yellow", "replaced": "cyan", "chaos": "bold red", "speculative": "cyan",
               "cancelled": "dim cyan", "info": "dim"}
STATE_STYLE = {"idle": "dim", "mapping": "green", "reducing": "blue", "dead": "red",
               "replaced": "dim red", "starting": "yellow"}


def _bar(label: str, p: PhaseProgress, now: float) -> Table:
    row = Table.grid(padding=(0, 1))
    row.add_column(width=7)
    row.add_column(width=30)
    row.add_column()
    total = max(p.total, 1)
    row.add_row(Text(label, style="bold"), ProgressBar(total=total, completed=p.done, width=30),
                Text(progress_text("", p, now).lstrip()))
    return row


def _workers_table(snap: JobSnapshot) -> Table:
    table = Table(box=None, padding=(0, 2), header_style="bold", show_edge=False)
    for col in ("worker", "state", "task", "done", "heartbeat"):
        table.add_column(col)
    for w in snap.workers:
        task = f"{w.task} #{w.attempt}" if w.task else "-"
        age = f"{w.heartbeat_age:.1f}s" if w.heartbeat_age is not None else "-"
        table.add_row(w.name, Text(w.state, style=STATE_STYLE.get(w.state, "")), task,
                      str(w.tasks_done), age)
    return table


def render_live(snap: JobSnapshot) -> RenderableType:
    """The live view: phase and time, map/reduce bars, workers, recent events."""
    header = Text.assemble(
        ("mrctl ", "bold"), (snap.name, "bold cyan"), f"  job {snap.job_id}  ",
        *((snap.step_label() + "  ", "bold magenta"),) if snap.steps > 1 else (),
        ("phase: ", "dim"), (PHASE_WORDS.get(snap.phase, snap.phase), "bold"),
        f"  {snap.elapsed:.1f}s",
    )
    counters = Text(f"retries {snap.retries}   refused late commits {snap.refused}   "
                    f"lost {snap.lost}   failures {snap.failures}", style="dim")
    parts: list[RenderableType] = [header, _bar("map", snap.map, snap.elapsed),
                                   _bar("reduce", snap.reduce, snap.elapsed), counters]
    shown = counter_lines(snap)[:8] + ([f"bad records skipped {snap.bad_records}"] if snap.bad_records else [])
    if shown:
        parts.append(Text("   ".join(shown), style="cyan"))
    if snap.workers:
        parts.append(_workers_table(snap))
    for e in snap.events[-6:]:
        parts.append(Text(f"{e.at:6.1f}s  {e.message}", style=EVENT_STYLE.get(e.kind, "")))
    return Group(*parts)


def render_summary(snap: JobSnapshot) -> RenderableType:
    style = {"succeeded": "bold green", "failed": "bold red"}.get(snap.status, "bold yellow")
    first, *rest = summary_lines(snap)
    return Group(Text(first, style=style), *(Text(line) for line in rest))


class LiveReporter:
    def __init__(self, console: Console, min_interval: float = 0.12,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.live = Live(console=console, auto_refresh=False, transient=False, redirect_stdout=False,
                         redirect_stderr=False)
        self.min_interval, self.clock, self._last = min_interval, clock, 0.0

    def start(self) -> None:
        self.live.start()

    def update(self, snap: JobSnapshot) -> None:
        now = self.clock()
        if now - self._last >= self.min_interval or snap.phase in ("done", "teardown"):
            self._last = now
            self.live.update(render_live(snap), refresh=True)

    def log(self, message: str, level: int) -> None:
        style = "red" if level >= logging.ERROR else "yellow" if level >= logging.WARNING else "dim"
        self.live.console.print(message, style=style, markup=False, highlight=False)

    def finish(self, snap: JobSnapshot) -> None:
        self.live.update(render_live(snap), refresh=True)
        self.live.stop()
        self.console.print(render_summary(snap))

    def close(self) -> None:
        self.live.stop()
