"""The options `mrctl run` and `mrctl mrjob` share, declared once, and what they make."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mrctl.runner import RunOptions

Workers = Annotated[int | None, typer.Option("--workers", "-w", help="Number of workers.")]
Backend = Annotated[str | None, typer.Option(help="docker | swarm | local | inline.")]
DockerHostOpt = Annotated[str | None, typer.Option(
    "--docker-host", envvar="DOCKER_HOST", help="The Docker engine for the docker and swarm backends, e.g. "
    "tcp://10.0.0.5:2375 or ssh://user@host (default: the local socket).")]
Registry = Annotated[str | None, typer.Option(
    "--registry", help="A registry (HOST, HOST:PORT or HOST:PORT/PATH, e.g. "
    "127.0.0.1:5000): the images are pushed there and every swarm node pulls them from it (swarm backend).")]
EncryptedOverlay = Annotated[bool, typer.Option(
    "--encrypted-overlay", help="Swarm backend: encrypt the cluster's overlay network between nodes (IPsec; "
    "Redis's password and the job's data cross it).")]
Reducers = Annotated[int | None, typer.Option(help="Number of reduce tasks (R).")]
ChunkSize = Annotated[str | None, typer.Option(help="Map chunk size, e.g. 4MiB.")]
TaskTimeout = Annotated[float | None, typer.Option(help="Seconds before a task attempt is abandoned.")]
MaxAttempts = Annotated[int | None, typer.Option(help="Attempts per task before the job fails.")]
WorkerOutput = Annotated[bool, typer.Option(
    "--worker-output", help="Show what the job's code prints or logs in the workers, as "
    "[worker-2 m:3] lines on stderr.")]
Speculative = Annotated[bool | None, typer.Option(
    "--speculative/--no-speculative", help="Back up straggling map tasks near the end of the map phase.")]
Keep = Annotated[bool, typer.Option(help="Leave the cluster running (mrctl down removes it).")]
Offline = Annotated[bool | None, typer.Option(
    "--offline/--online", help="Build base images locally instead of pulling them.")]
RedisMemory = Annotated[str, typer.Option(help="Redis maxmemory, e.g. 1gb.")]
Chaos = Annotated[str | None, typer.Option(
    help="Kill random busy workers to watch recovery: kill=N[,every=SECONDS][,seed=N].")]
Cluster = Annotated[str | None, typer.Option(
    help="Run on the warm cluster NAME (see mrctl up): no start, no teardown.")]
Timeline = Annotated[str | None, typer.Option(
    help="Draw the run's timeline into FILE (.png, .svg or .html) when it ends, however it ends.")]
Ui = Annotated[bool, typer.Option(
    "--ui", help="Serve the run's web page on 127.0.0.1 while it runs (prints its URL; opens a browser on a "
    "terminal).")]
Plain = Annotated[bool, typer.Option(help="Plain log lines, no live view (default without a TTY).")]
Json = Annotated[bool, typer.Option("--json", help="Print only the final summary, as JSON, on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")]


def run_options(*, keep: bool, redis_memory: str, offline: bool | None, chaos: str | None, worker_output: bool,
                cluster: str | None, docker_host: str | None, backend: str | None, workers: int | None,
                timeline: str | None, registry: str | None = None, encrypted_overlay: bool = False) -> RunOptions:
    """The run's options from the flags, checked (a bad flag is a SpecError, exit 2)."""
    from mrctl.chaos import ChaosPlan, parse_chaos
    from mrctl.registries import check_registry
    from mrctl.runner import RunOptions
    from mrctl.sizes import parse_redis_memory

    if timeline is not None:
        from mrctl.timeline import check_suffix

        check_suffix(timeline)
    if cluster is not None:
        from mrctl.backends.warm import check_run

        check_run(cluster, keep, backend, workers)
    return RunOptions(keep=keep, redis_memory=parse_redis_memory(redis_memory), offline=offline,
                      chaos=parse_chaos(chaos) if chaos else ChaosPlan(), worker_output=worker_output,
                      cluster=cluster, docker_host=docker_host,
                      registry=check_registry(registry) if registry else None, encrypted_overlay=encrypted_overlay)


def view_mode(json_: bool, quiet: bool, plain: bool) -> str | None:
    return "json" if json_ else "quiet" if quiet else "plain" if plain else None
