"""The timeline picture of a recorded run: one row per worker, one bar per task attempt over
time, coloured by phase and outcome, with each shuffle barrier and each chaos kill marked.

It is what explains stragglers and recovery at a glance: a killed worker's row stops with a
lost attempt under an X, its replacement's row starts beside it, the lost task shows up again on
another row, and the reduce bars begin only after the barrier.

`layout` (mrctl.observe.timeline_layout) is a pure function of a RunRecord (rows, bars, marks:
plain data the web page and the tests use too); `draw` turns it into a .png, .svg or .html file
with matplotlib. matplotlib is imported only when drawing, so reading a layout costs nothing.
"""

from __future__ import annotations

import html
import io
import logging
import os
import secrets
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from mrctl.errors import MrctlError, SpecError
from mrctl.observe.record import RunRecord
from mrctl.observe.timeline_layout import Layout, layout

log = logging.getLogger(__name__)

SUFFIXES = (".png", ".svg", ".html")

def check_suffix(path: str | Path) -> str:
    """The picture's format from the file name, or a SpecError naming the ones there are."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise SpecError(f"timeline {path}: the file name must end in {', '.join(SUFFIXES)} "
                        "(the suffix picks the format)")
    return suffix


def draw(run: RunRecord, path: str | Path) -> Path:
    """Draw `run`'s timeline into `path` (.png, .svg or a self-contained .html page), written
    atomically (a temp file beside it, then a rename): no half picture is ever left."""
    path = Path(path)
    data = render(run, check_suffix(path))
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")  # open() keeps the umask's mode
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SpecError(f"timeline {path}: cannot write it: {exc.strerror or exc}") from None
    return path


def drawer(path: str | Path | None) -> Callable[[RunRecord], None] | None:
    """`mrctl run --timeline PATH`: what run_job's `on_record` calls with the run's record."""
    if path is None:
        return None
    return lambda run: draw_after_run(run, path)


def draw_after_run(run: RunRecord, path: str | Path) -> None:
    """Draw the picture of a run that just ended, however it ended. A picture that cannot be
    drawn is a warning, never the run's failure (like the history)."""
    try:
        draw(run, path)
    except MrctlError as exc:
        log.warning("%s", exc)
    except Exception:  # noqa: BLE001 - a drawing bug must not hide how the run ended
        log.warning("the timeline %s could not be drawn", path, exc_info=True)
    else:
        log.info("timeline of %s written to %s", run.job_id, path)


def render(run: RunRecord, suffix: str) -> bytes:
    """The picture as bytes in the format of `suffix` (.png, .svg, .html)."""
    if suffix not in SUFFIXES:
        raise SpecError(f"timeline format {suffix!r}: expected one of {', '.join(SUFFIXES)}")
    import matplotlib

    from mrctl.observe.timeline_plot import plot

    lay = layout(run)
    figure = plot(run, lay)
    out = io.BytesIO()
    # svg.fonttype none: text stays text (searchable, small); a fixed hash salt and no date
    # make the same run draw the same bytes.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "mrctl"}):
        if suffix == ".png":
            figure.savefig(out, format="png", dpi=110)
        else:
            figure.savefig(out, format="svg", metadata={"Date": None})
    if suffix != ".html":
        return out.getvalue()
    return page(run, out.getvalue().decode("utf-8"), lay).encode("utf-8")


def page(run: RunRecord, svg: str, lay: Layout | None = None) -> str:
    """A self-contained HTML page: a title, a short summary and the SVG inline (no scripts, no
    links out, so it opens anywhere, offline, and can be mailed)."""
    svg = svg[svg.index("<svg"):]  # the XML prolog and doctype are not allowed inside HTML
    title = html.escape(f"{run.name} · {run.job_id} · {run.status}")
    items = "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(run, lay))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>mrctl timeline: {title}</title>"
        "<style>body{font-family:sans-serif;margin:1.5em;color:#222}"
        "svg{max-width:100%;height:auto}li{margin:.15em 0}</style></head>"
        f"<body><h1>{title}</h1><ul>{items}</ul>\n{svg}\n</body></html>\n"
    )


def summary_lines(run: RunRecord, lay: Layout | None = None) -> list[str]:
    """What the picture shows, in words: run, workers, attempts by outcome, kills, barriers."""
    lay = lay or layout(run)
    outcomes = Counter(b.outcome for b in lay.bars)
    by_outcome = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items(), key=lambda x: -x[1]))
    lines = [
        f"{run.status} (exit {run.exit_code}) in {run.elapsed:.1f} s on the {run.backend} backend",
        f"{len(lay.rows)} workers ran attempts ({run.workers} at a time, "
        f"{len(lay.replacements)} replacements started)",
        f"{len(lay.bars)} attempts: {by_outcome or 'none'}"
        + (f", {sum(b.backup for b in lay.bars)} backups" if any(b.backup for b in lay.bars) else ""),
    ]
    if run.attempts_dropped:
        lines.append(f"{run.attempts_dropped} committed attempts not recorded (past the record's limit)")
    if lay.kills:
        lines.append("chaos killed " + ", ".join(f"{k.worker} at {k.at:.1f} s" for k in lay.kills))
    if lay.barriers:
        lines.append("shuffle barrier at " + ", ".join(f"{b:.1f} s" for b in lay.barriers))
    if run.error:
        lines.append(f"error: {run.error.splitlines()[0][:300]}")
    return lines
