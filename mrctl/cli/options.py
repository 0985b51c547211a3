"""The flags of `mrctl run` and `mrctl mrjob`, made from the one table of run options
(mrctl.master.options), and the options other commands share."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from mrctl.master.options import BY_NAME, RUN_OPTIONS


def _shared(name: str) -> Any:
    """A run option that other commands take too (up, status, logs, down, images), with the
    table's flag and help: one definition."""
    o = BY_NAME[name]
    return Annotated[o.type, typer.Option(*o.flags, envvar=o.env, help=o.help)]


DockerHostOpt = _shared("docker_host")
Registry = _shared("registry")

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

