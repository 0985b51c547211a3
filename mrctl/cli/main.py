"""The `mrctl` command: a thin skin over the library. Each command parses its options, calls
one library function and prints. Errors are mapped to exit codes in one place
(`mrctl.cli.base.exit_codes`).

Exit codes: 0 success, 1 job failed, 2 usage or spec error, 3 infrastructure error
(Docker, Redis, redis-server, image build), 130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from mrctl.cli import mrjob as cli_mrjob
from mrctl.cli import options as opt
from mrctl.cli import run as cli_run
from mrctl.cli import runs as cli_runs
from mrctl.cli import web as cli_web
from mrctl.cli.base import EXIT_CODES_HELP, exit_codes, setup_logging
from mrctl.cli.run import SpecArg

app = typer.Typer(
    help="MapReduce on Redis and Docker containers.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    # click's plain help, as git's and docker's: rich's panels cost 70 ms of imports on every
    # --help (half of it) and kept the docstrings' line breaks mid-sentence
    rich_markup_mode=None,
)
app.command()(exit_codes(cli_run.run))


@app.command()
@exit_codes
def validate(spec: SpecArg) -> None:
    """Check a job spec and its job modules (imported, as a worker imports them) without
    running a job.

    Example:

    \b
      mrctl validate jobspecs/wordcount.yaml
    """
    from mrctl.spec.jobspec import load_spec
    from mrctl.worker.loader import check_imports

    job = load_spec(spec)
    check_imports(dict.fromkeys(s.module for g in job.program for s in g.steps))
    typer.echo(f"{spec}: ok — job {job.name!r}, {len(job.inputs)} input file(s), "
               f"{job.workers} workers, {job.reducers} reducers, output {job.output_path}")
    for name, value in job.params.items():
        typer.echo(f"  param {name} = {value!r}")
    if job.steps:
        from mrctl.spec.steps import describe

        for line in describe(job.steps, job.params):
            typer.echo(f"  {line}")


@app.command()
@exit_codes
def worker(
    redis_url: Annotated[str | None, typer.Option(
        envvar="MRCTL_REDIS_URL",
        help="redis://:password@host:port/0 or unix://:password@/path/redis.sock?db=0 (shows in ps; "
             "prefer a file)")] = None,
    redis_url_file: Annotated[Path | None, typer.Option(
        envvar="MRCTL_REDIS_URL_FILE", help="A file holding the Redis URL (what containers get).")] = None,
    name: Annotated[str | None, typer.Option(envvar="MRCTL_WORKER_NAME", help="This worker's name.")] = None,
    burst: Annotated[bool, typer.Option(help="Exit when the current job ends.")] = False,
    parent_pid: Annotated[int | None, typer.Option(envvar="MRCTL_PARENT_PID", hidden=True)] = None,
) -> None:
    """Run a worker: claim tasks from Redis and run them (what each container runs).

    Example:

    \b
      MRCTL_REDIS_URL_FILE=/run/mrctl/redis-url mrctl worker --name worker-1
    """
    from mrctl.worker.main import run_worker

    raise typer.Exit(run_worker(redis_url, redis_url_file, name, burst, parent_pid))


JobOpt = Annotated[str | None, typer.Option("--job", "-j", help="Cluster id, job id or job name.")]


@app.command()
@exit_codes
def up(
    workers: Annotated[int, typer.Option("--workers", "-w", help="Number of workers.")] = 2,
    name: Annotated[str | None, typer.Option(help="The cluster's name (default: warm-<random>).")] = None,
    backend: Annotated[str, typer.Option(help="docker (a local cluster cannot stay warm).")] = "docker",
    docker_host: opt.DockerHostOpt = None,
    redis_memory: Annotated[str, typer.Option(help="Redis maxmemory, e.g. 1gb.")] = "1gb",
    offline: Annotated[bool | None, typer.Option(
        "--offline/--online", help="Build base images locally instead of pulling them.")] = None,
) -> None:
    """Start a warm cluster (Redis and the workers) and leave it running for jobs to run on one
    after another, without a start or teardown each; prints its name on stdout.

    Example:

    \b
      mrctl up --workers 2 --name dev
      mrctl run jobspecs/wordcount.yaml --cluster dev
      mrctl down --cluster dev
    """
    from mrctl.backends.warm import up as start
    from mrctl.master.signals import SignalGuard
    from mrctl.spec.sizes import parse_redis_memory

    setup_logging(logging.INFO)
    with SignalGuard():  # Ctrl-C or SIGTERM during the start removes what was started
        typer.echo(start(name, workers, parse_redis_memory(redis_memory), offline, backend, docker_host))


@app.command()
@exit_codes
def status(
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    docker_host: opt.DockerHostOpt = None,
) -> None:
    """Show running clusters: job, phase, progress, workers and their heartbeats.

    Example:

    \b
      mrctl status
    """
    import dataclasses
    import json

    from mrctl.backends import fleet as clusters
    from mrctl.dockerapi.host import DockerHost

    with DockerHost(base_url=docker_host) as host:
        found = clusters.status(host)
    if json_:
        typer.echo(json.dumps([dataclasses.asdict(s) for s in found], indent=2))
    else:
        typer.echo(clusters.format_status(found))


@app.command()
@exit_codes
def logs(
    name: Annotated[str, typer.Argument(help="worker-N or redis.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines.")] = None,
    job: JobOpt = None,
    docker_host: opt.DockerHostOpt = None,
) -> None:
    """Print a container's logs.

    Example:

    \b
      mrctl logs worker-2 --tail 20
    """
    from mrctl.backends import fleet as clusters
    from mrctl.dockerapi.host import DockerHost

    with DockerHost(base_url=docker_host) as host:
        for chunk in clusters.logs(host, name, job, tail if tail is not None else "all", follow):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()


@app.command()
@exit_codes
def down(
    job: JobOpt = None,
    cluster: Annotated[str | None, typer.Option(help="Remove the warm cluster NAME (mrctl up).")] = None,
    all_: Annotated[bool, typer.Option(
        "--all", help="Remove every mrctl cluster whose master is gone or that --keep left: Docker "
                      "ones and local ones (warm ones only with --cluster).")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Remove the chosen clusters even if their master still runs (its job then "
                        "fails), or runs on another host, where it cannot be checked.")] = False,
    docker_host: opt.DockerHostOpt = None,
) -> None:
    """Remove what a cluster left once its master is gone: a Docker cluster's containers and
    network (after --keep, or a master that was killed); a local cluster's processes and temp
    dir when its master died; the spill directories of masters that died (any backend); with
    --cluster, a warm cluster (without it, warm clusters are left running).
    A cluster whose master still runs (or runs on another host) is left, one line each,
    unless --force. Local leftovers are cleaned even when Docker is not reachable.

    Example:

    \b
      mrctl down --all
    """
    from mrctl.backends import fleet as clusters

    typer.echo(clusters.format_down(clusters.down(job, all_, cluster, docker_host, force=force)), err=True)


@app.command()
@exit_codes
def images(
    build: Annotated[bool, typer.Option("--build", help="Build (or pull) the images now.")] = False,
    offline: Annotated[bool | None, typer.Option(
        "--offline/--online", help="Build the base from Debian packages instead of pulling.")] = None,
    push_to: Annotated[list[str] | None, typer.Option(
        "--push-to", help="Copy the images to the Docker engine URL (repeatable; a swarm's other "
                          "nodes, without a registry): docker save here, docker load there.")] = None,
    registry: opt.Registry = None,
    docker_host: opt.DockerHostOpt = None,
) -> None:
    """List mrctl's images, or prepare them ahead of a run with --build.

    Example:

    \b
      mrctl images --build --push-to ssh://me@node2 --push-to tcp://10.0.0.6:2375

    Into a registry, for every node to pull: mrctl images --registry 127.0.0.1:5000
    """
    from mrctl.dockerapi.host import DockerHost
    from mrctl.images import build as image_store
    from mrctl.images import registries

    setup_logging(logging.INFO)
    registry = registries.check_registry(registry) if registry else None
    with DockerHost(timeout=600, base_url=docker_host) as host:
        if build or push_to or registry:
            say = lambda msg: typer.echo(msg, err=True)  # noqa: E731
            ready = image_store.ensure_images(host, say, offline)
            typer.echo(f"worker image: {ready.worker}\nredis image:  {ready.redis}", err=True)
            image_store.push_to_engines(host, ready, push_to or [], say)
            if registry:
                pushed = registries.push_to_registry(host, ready, registry, say)
                typer.echo(f"pushed: {pushed.worker}\npushed: {pushed.redis}", err=True)
        for row in image_store.list_images(host):
            typer.echo("  ".join(str(x) for x in row))


@app.command()
@exit_codes
def doctor(
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check what a run needs here (Docker engine, registry, images, Debian mirror,
    redis-server, disk) and print the fix for each problem. Exit 0 when a run would work, 3 if not.

    Example:

    \b
      mrctl doctor
    """
    import dataclasses
    import json

    from rich.console import Console

    from mrctl.cli.doctor import diagnose, render_diagnosis

    found = diagnose()
    if json_:
        typer.echo(json.dumps({"ready": found.docker_ready,
                               "checks": [dataclasses.asdict(c) for c in found.checks]}, indent=2))
    else:
        Console(width=max(100, Console().width)).print(render_diagnosis(found))
    if not found.docker_ready:
        raise typer.Exit(3)


app.command()(exit_codes(cli_runs.history))
app.command()(exit_codes(cli_runs.show))
app.command()(exit_codes(cli_runs.timeline))
app.command()(exit_codes(cli_web.ui))
app.command()(exit_codes(cli_mrjob.mrjob))


def main() -> None:
    sys.argv = cli_mrjob.take_script_args(sys.argv)
    app()
