"""The options of a run, declared once: `mrctl run`'s and `mrctl mrjob`'s flags (mrctl.cli.options
makes them from this table) and `mrctl.run`'s keyword arguments, by the same names, resolved by
one function with one set of checks, so the API and the command line cannot drift.

Precedence: defaults < spec file < environment < flags (keyword arguments in Python).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrctl.errors import SpecError

if TYPE_CHECKING:  # both import much; the CLI imports this table before it knows the command
    from mrctl.master.driver import RunOptions
    from mrctl.spec.jobspec import JobSpec


@dataclass(frozen=True)
class RunOption:
    name: str  # mrctl.run's keyword; the flag is --name with '-' for '_' unless `flags` says
    type: Any  # what the command line converts the text to (click reads it)
    default: Any
    help: str
    to: str  # where the value goes: "spec" (Overrides), "run" (RunOptions) or "view" (how it is shown)
    flags: tuple[str, ...] = ()  # the flag's spellings (default: typer's, --name or --name/--no-name)
    env: str | None = None  # read when the flag is not given
    mrjob: bool = True  # `mrctl mrjob` has it too (it names inputs and output its own way)

    @property
    def flag(self) -> str:
        """The flag as the checks' messages name it."""
        return self.flags[0].split("/")[0] if self.flags else "--" + self.name.replace("_", "-")


def _opt(name: str, type_: Any, default: Any, help_: str, to: str, *flags: str, **more: Any) -> RunOption:
    return RunOption(name, type_, default, help_, to, flags, **more)


RUN_OPTIONS: tuple[RunOption, ...] = (
    _opt("workers", int | None, None, "Number of workers.", "spec", "--workers", "-w"),
    _opt("input", list[str] | None, None, "Input file, directory or glob (repeatable); replaces the spec's.",
         "spec", "--input", "-i", mrjob=False),
    _opt("output", str | None, None, "Output path; .json/.jsonl/.tsv/.csv picks the format.", "spec",
         "--output", "-o", mrjob=False),
    _opt("backend", str | None, None, "docker | swarm | local | inline.", "spec"),
    _opt("docker_host", str | None, None, "The Docker engine for the docker and swarm backends, e.g. "
         "tcp://10.0.0.5:2375 or ssh://user@host (default: DOCKER_HOST, else the local socket).", "run",
         "--docker-host", env="DOCKER_HOST"),
    _opt("registry", str | None, None, "A registry (HOST, HOST:PORT or HOST:PORT/PATH, e.g. 127.0.0.1:5000): "
         "the images are pushed there and every swarm node pulls them from it (swarm backend).", "run",
         "--registry"),
    _opt("encrypted_overlay", bool, False, "Swarm backend: encrypt the cluster's overlay network between nodes "
         "(IPsec; Redis's password and the job's data cross it).", "run", "--encrypted-overlay"),
    _opt("reducers", int | None, None, "Number of reduce tasks (R).", "spec"),
    _opt("chunk_size", str | None, None, "Map chunk size, e.g. 4MiB.", "spec"),
    _opt("task_timeout", float | None, None, "Seconds before a task attempt is abandoned.", "spec"),
    _opt("max_attempts", int | None, None, "Attempts per task before the job fails.", "spec"),
    _opt("param", list[str] | None, None, "A job parameter NAME=VALUE (repeatable; the value read as YAML), "
         "self.params[NAME] in job code; over the spec's params.", "spec", "--param", "-p", mrjob=False),
    _opt("worker_output", bool, False, "Show what the job's code prints or logs in the workers, as "
         "[worker-2 m:3] lines on stderr.", "run", "--worker-output"),
    _opt("max_worker_restarts", int | None, None, "Workers that may die before doing any work within a minute "
         "(a crash loop) before the job fails; workers dying on a task are always replaced.", "spec"),
    _opt("speculative", bool | None, None, "Back up straggling map tasks near the end of the map phase.", "spec",
         "--speculative/--no-speculative"),
    _opt("strict", bool, False, "Fail on undecodable input bytes, naming file and line (default: replace, "
         "count).", "spec", "--strict"),
    _opt("keep", bool, False, "Leave the cluster running (mrctl down removes it).", "run"),
    _opt("offline", bool | None, None, "Build base images locally instead of pulling them.", "run",
         "--offline/--online"),
    _opt("redis_memory", str, "1gb", "Redis maxmemory, e.g. 1gb.", "run"),
    _opt("chaos", str | None, None, "Kill random busy workers to watch recovery: "
         "kill=N[,every=SECONDS][,seed=N].", "run"),
    _opt("cluster", str | None, None, "Run on the warm cluster NAME (see mrctl up): no start, no teardown.", "run"),
    _opt("timeline", str | None, None, "Draw the run's timeline into FILE (.png, .svg or .html) when it ends, "
         "however it ends.", "view"),
    _opt("ui", bool, False, "Serve the run's web page on 127.0.0.1 while it runs (prints its URL; opens a "
         "browser on a terminal).", "view", "--ui"),
    _opt("plain", bool, False, "Plain log lines, no live view (default without a TTY).", "view"),
    _opt("json", bool, False, "Print only the final summary, as JSON, on stdout.", "view", "--json"),
    _opt("quiet", bool, False, "Print only errors.", "view", "--quiet", "-q"),
)
BY_NAME = {o.name: o for o in RUN_OPTIONS}


@dataclass(frozen=True)
class RunView:
    """How a run is shown: a reporter mode (None: live on a terminal, plain elsewhere), a timeline
    picture drawn when it ends, the run's web page."""

    mode: str | None = None
    timeline: str | None = None
    ui: bool = False


@dataclass(frozen=True)
class ResolvedRun:
    job: JobSpec
    options: RunOptions
    view: RunView


def resolve(spec: str | Path | JobSpec, given: Mapping[str, Any],
            environ: Mapping[str, str] | None = None) -> ResolvedRun:
    """The job, its run options and its view from a spec (a path or a JobSpec) and the options
    given by name (flags or keywords; an absent or None one takes the environment's, then the
    spec's, then the default). Every bad value is a SpecError naming the flag (exit 2)."""
    import os

    environ = os.environ if environ is None else environ
    unknown = sorted(set(given) - set(BY_NAME))
    if unknown:
        raise SpecError(f"unknown option {unknown[0]!r}; expected one of {', '.join(BY_NAME)}")
    values = {o.name: given.get(o.name, o.default) for o in RUN_OPTIONS}
    for o in RUN_OPTIONS:
        if o.env and values[o.name] is None and environ.get(o.env):
            values[o.name] = environ[o.env]
        _check_type(o, values[o.name])
    options = _run_options(values)
    view = _view(values)
    return ResolvedRun(_job(spec, values, environ), options, view)


_TYPES: dict[Any, tuple[tuple[type, ...], str]] = {
    int: ((int,), "an integer"), float: ((int, float), "a number"), bool: ((bool,), "true or false"),
    str: ((str, Path), "a string"), list: ((list, tuple), "a list"),
}


def _check_type(option: RunOption, value: Any) -> None:
    """What the command line's converter guarantees, for a keyword argument (click never lets
    `--workers abc` through; Python can pass anything)."""
    if value is None and option.default is None:
        return
    kind = _base(option.type)
    if kind is list and isinstance(value, str | Path):
        return  # one input or param: a list of one
    allowed, what = _TYPES[kind]
    if not isinstance(value, allowed) or (kind is not bool and isinstance(value, bool)):
        raise SpecError(f"{option.flag}: expected {what}, got {value!r}")


def _base(type_: Any) -> Any:
    """int for `int | None`, list for `list[str] | None`."""
    args = [t for t in getattr(type_, "__args__", ()) if t is not type(None)]
    if len(args) == 1 and getattr(type_, "__origin__", None) is not list:
        type_ = args[0]
    return getattr(type_, "__origin__", None) or type_


def _check_cluster_run(cluster: str | None, keep: bool, backend: str | None, workers: int | None) -> None:
    """Settings that make no sense with `--cluster` (the cluster exists, with its workers)."""
    if cluster is None:
        return
    if keep:
        raise SpecError("--keep with --cluster: a warm cluster stays anyway (mrctl down --cluster removes it)")
    if backend not in (None, "docker"):
        raise SpecError(f"--backend {backend} with --cluster: warm clusters run on Docker")
    if workers is not None:
        raise SpecError("--workers with --cluster: the cluster has the workers mrctl up gave it")


def _run_options(values: dict[str, Any]) -> RunOptions:
    from mrctl.images.registries import check_registry
    from mrctl.master.chaos import ChaosPlan, parse_chaos
    from mrctl.master.driver import RunOptions
    from mrctl.spec.sizes import parse_redis_memory

    _check_cluster_run(values["cluster"], values["keep"], values["backend"], values["workers"])
    run = {o.name: values[o.name] for o in RUN_OPTIONS if o.to == "run"}
    run.update(redis_memory=parse_redis_memory(str(run["redis_memory"])),
               chaos=parse_chaos(run["chaos"]) if run["chaos"] else ChaosPlan(),
               registry=check_registry(run["registry"]) if run["registry"] else None)
    return RunOptions(**run)


def _view(values: dict[str, Any]) -> RunView:
    if values["timeline"] is not None:
        from mrctl.observe.timeline import check_suffix

        check_suffix(values["timeline"])
    mode = "json" if values["json"] else "quiet" if values["quiet"] else "plain" if values["plain"] else None
    timeline = None if values["timeline"] is None else str(values["timeline"])
    return RunView(mode, timeline, values["ui"])


def _job(spec: str | Path | JobSpec, values: dict[str, Any], environ: Mapping[str, str]) -> JobSpec:
    from mrctl.spec.jobspec import Overrides, load_spec, override

    over = Overrides(**_overrides(values))
    if isinstance(spec, str | Path):
        return load_spec(spec, over, environ)
    if over.inputs or over.output:
        raise SpecError("give --input/--output with a spec path, or set them on the JobSpec")
    return override(spec, over)


def _overrides(values: dict[str, Any]) -> dict[str, Any]:
    """The spec-level options as Overrides' fields (flag names differ where the spec's do)."""
    from mrctl.spec.jobspec import Overrides
    from mrctl.spec.params import parse_param

    names = {f.name for f in fields(Overrides)}
    inputs, params = values["input"] or (), values["param"] or ()
    spec = {o.name: values[o.name] for o in RUN_OPTIONS if o.to == "spec" and o.name in names}
    spec.update(
        inputs=tuple(str(p) for p in ([inputs] if isinstance(inputs, str | Path) else inputs)),
        params=tuple(p if isinstance(p, tuple) else parse_param(p)
                     for p in ([params] if isinstance(params, str) else params)),
        encoding_errors="strict" if values["strict"] else None,
        output=None if values["output"] is None else str(values["output"]))
    return spec
