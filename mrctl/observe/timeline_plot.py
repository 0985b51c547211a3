"""The matplotlib side of the timeline (mrctl.observe.timeline): a Figure from a Layout.

A Figure of its own, not pyplot: no global state and no GUI backend, so the web page can draw
from several threads and a headless machine needs no display. Bars of one look are drawn as one
PolyCollection built with numpy (a handful of draw calls, not one per bar), so a run of 10,000
tiny tasks still draws in about a second.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from mrctl.observe.record import RunRecord
from mrctl.observe.timeline_layout import Bar, Layout

# Committed bars take their phase's colour; any other outcome its own colour, outlined in the
# phase's, so both stay readable. Backups are hatched and outlined in black.
PHASE_COLOUR = {"map": "#4C78A8", "reduce": "#59A14F"}
OUTCOME_COLOUR = {"failed": "#E15759", "lost": "#F28E2B", "refused": "#B07AA1",
                  "cancelled": "#BAB0AC", "running": "#EDC948"}
OUTCOME_MEANING = {"failed": "failed (error, timeout, out of memory)", "lost": "lost (worker died or went silent)",
                   "refused": "refused (a zombie's late commit)", "cancelled": "cancelled (lost a backup race)",
                   "running": "still running when the run ended"}
BAR_HEIGHT = 0.72
X_LABEL = "seconds since the run started"
Y_LABEL = "workers"


def plot(run: RunRecord, lay: Layout) -> Figure:
    """The timeline of `run` as a matplotlib Figure (not shown, not saved)."""
    height = min(30.0, max(3.4, 1.7 + 0.36 * len(lay.rows)))
    fig = Figure(figsize=(13, height), layout="constrained")
    ax = fig.add_subplot()
    span = max(lay.end, 1e-3)
    _row_bands(ax, len(lay.rows), span)
    _bars(ax, lay.bars, span)
    for at in lay.barriers:
        ax.axvline(at, color="#222222", linestyle="--", linewidth=1.1, zorder=4)
    if lay.replacements:
        ax.scatter([m.at for m in lay.replacements], [m.row for m in lay.replacements], marker=">",
                   s=55, facecolor="white", edgecolor="#222222", linewidth=1.2, zorder=5)
    if lay.kills:
        ax.scatter([m.at for m in lay.kills], [m.row for m in lay.kills], marker="X", s=150,
                   color="#111111", edgecolor="white", linewidth=0.8, zorder=6)
    ax.set_xlim(0, span * 1.02)
    ax.set_ylim(max(1, len(lay.rows)) - 0.5, -0.5)  # the first worker on top
    if not lay.bars:  # e.g. a run that failed before a worker took a task
        ax.text(0.5, 0.5, "no task attempts were recorded", transform=ax.transAxes, ha="center", color="#666666")
    ax.set_yticks(range(len(lay.rows)), lay.rows, fontsize=9 if len(lay.rows) < 40 else 6)
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(Y_LABEL)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title(f"{run.name} · {run.job_id} · {run.status} in {run.elapsed:.1f} s "
                 f"· {len(lay.bars)} attempts on {len(lay.rows)} workers", fontsize=11, loc="left")
    ax.legend(handles=_legend(lay), loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8,
              frameon=False, borderaxespad=0)
    return fig


def _row_bands(ax: Any, rows: int, span: float) -> None:
    """A light band behind every other row, so a bar's worker is easy to follow across."""
    verts = [_rect(-span, i - 0.5, span * 4, 1.0) for i in range(1, rows, 2)]
    if verts:
        ax.add_collection(PolyCollection(verts, facecolor="#f4f4f4", edgecolor="none", zorder=0))


def _rect(x: float, y: float, w: float, h: float) -> list[tuple[float, float]]:
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


def _bars(ax: Any, bars: tuple[Bar, ...], span: float) -> None:
    """One PolyCollection per look (phase, outcome, backup). A bar is drawn at least a pixel
    or so wide, and one that did not commit (rarer, and what a learner looks for) wider."""
    groups: dict[tuple[str, str, bool], list[Bar]] = defaultdict(list)
    for b in bars:
        groups[(b.phase, b.outcome, b.backup)].append(b)
    thin = len(bars) > 2000  # edges of thousands of tiny bars would hide their faces
    for (phase, outcome, backup), group in groups.items():
        x0 = np.array([b.start for b in group])
        committed = outcome == "committed"
        x1 = x0 + np.maximum([b.width for b in group], span / (1500 if committed else 400))
        y0 = np.array([b.row for b in group]) - BAR_HEIGHT / 2
        y1 = y0 + BAR_HEIGHT
        verts = np.stack([np.column_stack(c) for c in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))], axis=1)
        ax.add_collection(PolyCollection(
            verts, zorder=3 if committed else 3.5,
            facecolor=PHASE_COLOUR[phase] if committed else OUTCOME_COLOUR[outcome],
            edgecolor="black" if backup else "white" if committed else PHASE_COLOUR[phase],
            linewidth=0 if thin and not backup else 0.5 if committed else 1.3,
            hatch="////" if backup else None,
        ))


def _legend(lay: Layout) -> list[Any]:
    """Both phases always; outcomes, backups and marks only when the run has them."""
    handles: list[Any] = [Patch(facecolor=PHASE_COLOUR[p], label=f"{p} attempt, committed") for p in PHASE_COLOUR]
    present = {b.outcome for b in lay.bars}
    handles += [Patch(facecolor=OUTCOME_COLOUR[o], edgecolor="#666666", linewidth=1.3, label=OUTCOME_MEANING[o])
                for o in OUTCOME_COLOUR if o in present]
    if any(b.backup for b in lay.bars):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="////", label="speculative backup"))
    if lay.barriers:
        handles.append(Line2D([], [], color="#222222", linestyle="--", label="shuffle barrier (map → reduce)"))
    if lay.kills:
        handles.append(Line2D([], [], marker="X", markersize=10, color="#111111", linestyle="none",
                              label="chaos kill"))
    if lay.replacements:
        handles.append(Line2D([], [], marker=">", markersize=7, markerfacecolor="white", color="#222222",
                              linestyle="none", label="replacement worker started"))
    return handles
