"""`mrctl history` and `mrctl show`: the run history, a thin skin over mrctl.observe.history
(registered on the app by mrctl.cli.main)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def history(
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs, newest first.")] = 20,
    json_: JsonOpt = False,
) -> None:
    """List recorded runs, newest first (every run is recorded when it ends).

    Example:

    \b
      mrctl history --limit 5
    """
    from mrctl.observe.history import History
    from mrctl.observe.run_view import format_history

    with History() as h:
        rows = h.runs(limit)
    if json_:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        typer.echo(format_history(rows))


def show(
    job: Annotated[str | None, typer.Argument(
        help="A job id, the start of one, or a job name (its newest run); default: the newest run.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Show a recorded run: summary, counters, steps, the slowest attempts, every failure with
    its traceback, and its events.

    Example:

    \b
      mrctl show wordcount
    """
    from mrctl.observe.history import History
    from mrctl.observe.run_view import format_run

    with History() as h:
        run = h.get(job)
    if json_:
        typer.echo(json.dumps(run.to_json(), indent=2))
    else:
        typer.echo(format_run(run))


def timeline(
    job: Annotated[str | None, typer.Argument(
        help="A job id, the start of one, or a job name (its newest run); default: the newest run.")] = None,
    output: Annotated[str, typer.Option(
        "--output", "-o", help="The picture: .png, .svg, or .html (a page with the SVG and a summary).")] = ...,
) -> None:
    """Draw a recorded run's timeline: one row per worker, one bar per task attempt over time,
    coloured by phase and outcome, with the shuffle barrier and chaos kills marked.

    Example:

    \b
      mrctl timeline wordcount -o timeline.png
    """
    from mrctl.observe.history import History
    from mrctl.observe.timeline import check_suffix, draw

    check_suffix(output)  # before anything is read: a wrong name is the cheapest mistake to report
    with History() as h:
        run = h.get(job)
    draw(run, output)
    typer.echo(f"{output}: timeline of {run.job_id} ({run.name}, {run.status}, "
               f"{len(run.attempts)} attempts)", err=True)
