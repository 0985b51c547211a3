"""The flags of `mrctl run` and `mrctl mrjob`, made from the one table of run options
(mrctl.master.options), and the options other commands share."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from mrctl.master.options import RUN_OPTIONS

DockerHostOpt = Annotated[str | None, typer.Option(
    "--docker-host", envvar="DOCKER_HOST", help="The Docker engine, e.g. tcp://10.0.0.5:2375 or ssh://user@host "
    "(default: the local socket).")]
Registry = Annotated[str | None, typer.Option(
    "--registry", help="A registry (HOST, HOST:PORT or HOST:PORT/PATH, e.g. "
    "127.0.0.1:5000): the images are pushed there and every swarm node pulls them from it (swarm backend).")]

F = TypeVar("F", bound=Callable[..., Any])


def with_run_options(command: str) -> Callable[[F], F]:
    """Give a command (`run` or `mrjob`, taking `**flags`) the run's options as flags, from the one
    table of them (mrctl.master.options): click reads the signature this writes."""

    def decorate(fn: F) -> F:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())[:-1]  # all but **flags
        taken = {p.name for p in own}
        flags = [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default,
                                   annotation=Annotated[o.type, typer.Option(*o.flags, help=o.help)])
                 for o in RUN_OPTIONS if (command == "run" or o.mrjob) and o.name not in taken]
        fn.__signature__ = inspect.Signature(own + flags)  # type: ignore[attr-defined]
        return fn

    return decorate

