"""`mrctl run SPEC`: a job from its spec, shown on this terminal as its view asks."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mrctl.cli import options as opt
from mrctl.cli.base import setup_logging

SpecArg = Annotated[Path, typer.Argument(help="The job spec (YAML), e.g. jobspecs/wordcount.yaml.")]


@opt.with_run_options("run")
def run(spec: SpecArg, **flags: Any) -> None:
    """Run a MapReduce job.

    Example:

    \b
      mrctl run jobspecs/wordcount.yaml --workers 4 --timeline timeline.png

    Watch it in a browser (cancel it, kill a worker):

    \b
      mrctl run jobspecs/wordcount.yaml --ui

    On a warm cluster:

    \b
      mrctl up --name dev
      mrctl run jobspecs/wordcount.yaml --cluster dev

    Exit codes: 0 success, 1 job failed (user code error after retries), 2 usage or spec
    error, 3 infrastructure error (Docker or Redis unavailable, image build failed),
    130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
    """
    from mrctl.master.options import resolve
    from mrctl.master.signals import SignalGuard

    with SignalGuard():  # SIGTERM before the job starts still exits 143, not by the signal
        show_run(resolve(spec, flags))


def show_run(run: Any, out: Any = None) -> None:
    """A resolved run (mrctl.master.options) shown as its view asks, on this terminal."""
    from mrctl.api import run_shown
    from mrctl.observe.reporters import ReporterLogHandler, choose_reporter

    reporter = choose_reporter(run.view.mode, out or sys.stdout, sys.stderr, os.environ)
    setup_logging(logging.INFO, ReporterLogHandler(reporter))
    run_shown(run, reporter)
