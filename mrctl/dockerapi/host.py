"""Every Docker call mrctl makes, through docker-py. No other module imports `docker`.

Docker errors are translated here into `InfraError` with a message that says what to do.
Objects mrctl creates carry labels (`mrctl.cluster`, `mrctl.role`, `mrctl.job`): labels are
their identity, and cleanup only ever selects by them.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import importlib.util
import io
import logging
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrctl.dockerapi import OnFirstUse
from mrctl.errors import InfraError, Interrupted

# docker.errors, docker.types and requests.exceptions come with their packages (mrctl.dockerapi)
docker = OnFirstUse("docker")
requests = OnFirstUse("requests")

log = logging.getLogger(__name__)

LABEL_CLUSTER = "mrctl.cluster"
LABEL_ROLE = "mrctl.role"
LABEL_JOB = "mrctl.job"
LABEL_JOB_ID = "mrctl.job-id"  # the run a (non-warm) cluster was made for
LABEL_BACKEND = "mrctl.backend"  # swarm on a swarm cluster's objects (none on a Docker one's)
LABEL_CREATED = "mrctl.created"
# The master a cluster serves (mrctl.backends.master_id): `mrctl down` leaves a cluster whose
# master still runs. The kernel's boot id tells a reboot from another host of the same name.
LABEL_MASTER_HOST = "mrctl.master.host"
LABEL_MASTER_BOOT = "mrctl.master.boot-id"
LABEL_MASTER_PID = "mrctl.master.pid"
LABEL_MASTER_STARTED = "mrctl.master.started"  # clock ticks after boot: a reused pid never matches


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    status: str  # created | running | exited | paused | dead ...
    labels: dict[str, str]
    exit_code: int | None
    oom_killed: bool
    host_ports: dict[str, int]  # "6379/tcp" -> published host port
    host_ips: dict[str, str] = dataclasses.field(default_factory=dict)  # "6379/tcp" -> its address


@dataclass(frozen=True)
class FileToCopy:
    """A file put into a container before it starts, e.g. a secret it must not get otherwise."""

    name: str  # relative to the directory it is copied into
    data: bytes
    uid: int  # owner (and group) inside the container: the user the container runs as
    mode: int = 0o400


class SubnetTaken(InfraError):
    """The subnet asked for overlaps a network the engine already has."""


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except docker.errors.NotFound as exc:
        raise InfraError(f"{action}: not found ({exc.explanation or exc})") from None
    except docker.errors.APIError as exc:
        raise InfraError(f"{action}: Docker said: {exc.explanation or exc}") from None
    except docker.errors.DockerException as exc:
        raise InfraError(f"{action}: {exc}") from None
    except requests.exceptions.RequestException as exc:  # the engine went silent or away (a lost node)
        raise InfraError(f"{action}: the engine did not answer: {exc}") from None


# An image build's id, as a build argument that a Dockerfile may declare and put in a LABEL
# right after FROM (Dockerfile.worker does): every step image of the build then carries it.
BUILD_ARG, BUILD_LABEL = "MRCTL_BUILD", "mrctl.build"
LATE_STEP_S = 3.0  # how long after an unfinished build its last step may still be committed


@dataclass
class _BuildSteps:
    """What a build's output says: its lines, its image id, and the step images it made (the
    classic builder's ` ---> ID` after each step that did not come from the cache or FROM)."""

    lines: list[str] = dataclasses.field(default_factory=list)
    made: list[str] = dataclasses.field(default_factory=list)
    image_id: str | None = None
    _not_ours: bool = False  # the step's image is the base (FROM) or a cached one

    def take(self, chunk: dict[str, Any], on_line: Callable[[str], None]) -> None:
        if isinstance(aux := chunk.get("aux"), dict) and aux.get("ID"):
            self.image_id = aux["ID"]
        for line in str(chunk.get("stream", "")).splitlines():
            line = line.rstrip()
            if not line:
                continue
            self.lines.append(line)
            on_line(line)
            words = line.split()
            if line.startswith("Step ") and len(words) > 3:
                self._not_ours = words[3].upper() == "FROM"
            elif words == ["--->", "Using", "cache"]:
                self._not_ours = True
            elif len(words) == 2 and words[0] == "--->" and all(c in "0123456789abcdef" for c in words[1]):
                if not self._not_ours:
                    self.made.append(words[1])
                self._not_ours = False


@contextlib.contextmanager
def removing(what: str, also_fine: tuple[int, ...] = ()) -> Iterator[None]:
    """A removal of `what`: gone already is fine, as are the HTTP statuses `also_fine`; any
    other refusal is an InfraError."""
    try:
        yield
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        # a swarm answers 500 "network <id> not found" when the object went between get and remove
        gone = "not found" in str(exc.explanation or "")
        if exc.status_code not in also_fine and not gone:
            raise InfraError(f"removing {what}: {exc.explanation or exc}") from None


def label_filters(labels: dict[str, str]) -> dict[str, list[str]]:
    """Docker's `label` filter for objects carrying all of `labels` (an empty value: any)."""
    return {"label": [f"{k}={v}" if v else k for k, v in labels.items()]}


def engine_address(url: str | None) -> str:
    """Where the engine's published ports are reached from here: 127.0.0.1 for a local
    engine (unix socket, npipe), else the host of a tcp:// or ssh:// URL, as an IP address."""
    if not url or not url.startswith(("tcp://", "ssh://", "http://", "https://")):
        return "127.0.0.1"
    host = urllib.parse.urlsplit(url).hostname or "127.0.0.1"
    try:
        return socket.gethostbyname(host)
    except OSError as exc:
        raise InfraError(f"cannot resolve the Docker host {host!r} of {url}: {exc}") from None


def _creations(labels: dict[str, str]) -> dict[str, Any]:
    """The event filter for creations of containers carrying `labels`."""
    return {"type": "container", "event": "create", "label": [f"{k}={v}" if v else k for k, v in labels.items()]}


def _event_name(event: dict[str, Any]) -> str:
    return event.get("Actor", {}).get("Attributes", {}).get("name", "?")


_SSH_WRAPPERS: set[str] = set()  # the PATH entries of the open SshMasters' wrappers


class SshMaster:
    """One authenticated ssh connection to an ssh:// engine's host, that docker-py's requests
    share (OpenSSH's ControlMaster). docker-py runs `ssh HOST docker system dial-stdio` for each
    request, and a new ssh login for each took 0.37 s here (docker/docker-py#2966): 14 s of a
    two-worker cluster's start. While this is open, PATH's first `ssh` is a wrapper that adds
    `-o ControlPath=...` to the user's own client (its configuration, keys and jump hosts are
    still read), so each request is a new session on the one connection. Where the master
    cannot start without asking (BatchMode: a password, an unknown host key), nothing changes:
    requests log in one by one, as before, and their own prompts and errors say why.
    """

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        # the user's client: never another open SshMaster's wrapper (whose ControlPath would win)
        self._ssh = shutil.which("ssh", path=os.pathsep.join(
            e for e in os.environ.get("PATH", "").split(os.pathsep) if e not in _SSH_WRAPPERS))
        self._target = [*(("-l", parts.username) if parts.username else ()),
                        *(("-p", str(parts.port)) if parts.port else ()), "--", parts.hostname or ""]
        self.folder: str | None = None
        self._shim: str | None = None
        if self._ssh is None:
            return
        try:
            self.folder = tempfile.mkdtemp(prefix="mrctl-ssh-", dir="/tmp")  # short: a socket path
            # closed at the latest when the process exits (a SIGKILLed one's master ends after 60 s idle)
            atexit.register(self.close)
            self._start(url)
        except (OSError, subprocess.SubprocessError) as exc:  # a full /tmp, a master that hangs
            log.info("no shared ssh connection to %s (%s): one login per request", url, exc)
            self.close()

    @property
    def control(self) -> str:
        """The master's socket."""
        return os.path.join(self.folder or "", "c")

    def _start(self, url: str) -> None:
        with open(os.path.join(self.folder or "", "master.log"), "wb") as log_file:
            started = subprocess.run(
                [self._ssh or "ssh", "-M", "-S", self.control, "-o", "ControlPersist=60", "-o", "BatchMode=yes",
                 "-fnNT", *self._target], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log_file, timeout=120, check=False)
        if started.returncode != 0:
            log.info("no shared ssh connection to %s (ssh exited %d): one login per request", url,
                     started.returncode)
            return
        shim = os.path.join(self.folder or "", "bin")
        os.mkdir(shim)
        with open(os.path.join(shim, "ssh"), "w") as f:
            f.write(f'#!/bin/sh\nexec {shlex.quote(self._ssh or "ssh")} -o ControlMaster=no '
                    f'-o ControlPath={shlex.quote(self.control)} "$@"\n')
        os.chmod(os.path.join(shim, "ssh"), 0o755)
        self._shim = shim
        _SSH_WRAPPERS.add(shim)
        os.environ["PATH"] = shim + os.pathsep + os.environ.get("PATH", "")

    def close(self) -> None:
        """Stop the master and take the wrapper off PATH (once; later calls do nothing)."""
        atexit.unregister(self.close)
        if self._shim is not None:
            entries = os.environ.get("PATH", "").split(os.pathsep)
            os.environ["PATH"] = os.pathsep.join(e for e in entries if e != self._shim)
            _SSH_WRAPPERS.discard(self._shim)
            self._shim = None
        if self.folder is not None:
            if os.path.exists(self.control):  # a master that runs, the wrapper written or not
                subprocess.run([self._ssh or "ssh", "-S", self.control, "-O", "exit", *self._target],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


class DockerHost:
    """A connection to the Docker engine: `base_url` (--docker-host), else DOCKER_HOST, else
    the local socket. An ssh:// URL goes through the `ssh` client, one connection shared by
    every request (SshMaster), and needs paramiko all the same: docker-py's ssh support imports
    it (the `ssh` extra: pip install 'mrctl[ssh]')."""

    def __init__(self, timeout: int = 120, base_url: str | None = None) -> None:
        environment = {**os.environ, "DOCKER_HOST": base_url} if base_url else dict(os.environ)
        self.base_url = environment.get("DOCKER_HOST") or None
        ssh = (self.base_url or "").startswith("ssh://")
        if ssh and importlib.util.find_spec("paramiko") is None:
            raise InfraError(f"the Docker host {self.base_url} is an ssh:// URL, and docker-py's ssh support "
                             "needs paramiko: pip install 'mrctl[ssh]' (or pip install paramiko)")
        # docker-py imported here, before the try: its except clause must not import it again
        # while a signal's exception that cut the first import short is on its way out
        from_env, failed = docker.from_env, docker.errors.DockerException
        self._ssh = SshMaster(self.base_url or "") if ssh else None
        try:
            self._connect(from_env, failed, environment, timeout, ssh)
        except BaseException:
            if self._ssh is not None:
                self._ssh.close()
            raise

    def _connect(self, from_env: Any, failed: type[Exception], environment: dict[str, str], timeout: int,
                 ssh: bool) -> None:
        try:
            self.client = from_env(timeout=timeout, environment=environment, use_ssh_client=ssh)
            self.client.ping()
        except failed as exc:
            # docker-py wraps whatever its version probe raised, a signal's Interrupted too: a
            # Ctrl-C or SIGTERM while connecting is an interrupted run (130/143), not a lost engine
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, Interrupted):
                cause = cause.__cause__ or cause.__context__
            if cause is not None:
                raise cause from None
            where = f" at {self.base_url}" if self.base_url else ""
            raise InfraError(
                f"cannot reach the Docker engine{where}: "
                f"{exc}. Is Docker running, and may this user use it (docker ps)? "
                "Or run with --backend local."
            ) from None

    def publish_address(self) -> str:
        """The address to publish a port on so that this process reaches it: loopback for a
        local engine, the engine host's address for a remote one."""
        return engine_address(self.base_url)

    def close(self) -> None:
        self.client.close()
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    def bound_calls(self, timeout_s: float) -> None:
        """Every later call waits at most `timeout_s` for the engine (connect and each read):
        for an engine that may vanish, such as a swarm manager on a node that can be lost."""
        self.client.api.timeout = timeout_s

    def answers(self, timeout_s: float = 3.0) -> bool:
        """Whether the engine answers a ping within `timeout_s`."""
        saved, self.client.api.timeout = self.client.api.timeout, timeout_s
        try:
            return bool(self.client.ping())
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return False
        finally:
            self.client.api.timeout = saved

    def __enter__(self) -> DockerHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def version(self) -> str:
        with _translated("asking the engine's version"):
            return str(self.client.version().get("Version", "?"))

    def data_root(self) -> str:
        """Where the engine keeps images and containers (on the engine's host)."""
        with _translated("reading the engine's info"):
            return str(self.client.info().get("DockerRootDir", "/var/lib/docker"))

    # -- images ---------------------------------------------------------------------------

    def image_id(self, ref: str) -> str | None:
        """The id of a local image, or None when it is not here."""
        try:
            return self.client.images.get(ref).id
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise InfraError(f"looking up image {ref}: {exc.explanation or exc}") from None

    def image_labels(self, ref: str) -> dict[str, str]:
        with _translated(f"inspecting image {ref}"):
            return dict(self.client.images.get(ref).labels or {})

    def registry_answers(self, ref: str, timeout_s: float = 3.0) -> bool:
        """True when the engine's registry serves `ref`'s manifest within `timeout_s`.

        A cheap probe (no layers move) that fails fast where a pull would hang on a
        registry that cannot be reached: the engine may retry for half a minute.
        """
        saved, self.client.api.timeout = self.client.api.timeout, timeout_s
        try:
            self.client.images.get_registry_data(ref)
            return True
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            log.debug("registry probe for %s failed: %s", ref, exc)
            return False
        finally:
            self.client.api.timeout = saved

    def try_pull(self, ref: str) -> bool:
        """Pull an image; False (with the reason logged) when no registry can serve it."""
        repo, _, tag = ref.partition(":")
        try:
            self.client.images.pull(repo, tag=tag or "latest")
            return True
        except docker.errors.DockerException as exc:
            log.debug("pull of %s failed: %s", ref, exc)
            return False

    def import_rootfs(self, tar_path: str, ref: str, changes: list[str]) -> str:
        """`docker import` a root filesystem tarball as image `ref`; returns its id."""
        repo, _, tag = ref.partition(":")
        with _translated(f"importing {tar_path} as {ref}"):
            self.client.api.import_image_from_file(
                tar_path, repository=repo, tag=tag or "latest", changes=changes
            )
        image_id = self.image_id(ref)
        if image_id is None:
            raise InfraError(f"docker import of {tar_path} did not produce {ref}")
        return image_id

    def build(
        self,
        context_dir: str,
        dockerfile: str,
        ref: str,
        buildargs: dict[str, str],
        labels: dict[str, str],
        on_line: Callable[[str], None] = lambda line: None,
    ) -> str:
        """Build an image from a context directory without pulling; returns its id. A build
        that fails or is interrupted (Ctrl-C) leaves none of the step images it made: the
        engine keeps them as untagged, dangling images (one of 159 MB per interrupted worker
        build, the copied wheels) that nothing would ever use or remove. Those its output
        named are removed at once; with a Dockerfile that labels its steps with BUILD_ARG, so
        is one the engine commits after the build was cut short (watched LATE_STEP_S)."""
        steps = _BuildSteps()
        build_id = ""
        if BUILD_ARG in Path(context_dir, dockerfile).read_text(encoding="utf-8", errors="replace"):
            build_id = secrets.token_hex(8)  # its step images carry it (LABEL mrctl.build=...)
            buildargs = {**buildargs, BUILD_ARG: build_id}
        try:
            with _translated(f"building image {ref}"):
                stream = self.client.api.build(
                    path=context_dir, dockerfile=dockerfile, tag=ref, buildargs=buildargs,
                    labels=labels, rm=True, forcerm=True, pull=False, decode=True)
                try:
                    for chunk in stream:
                        if "error" in chunk:
                            raise InfraError(f"building image {ref} failed: {str(chunk['error']).strip()}\n"
                                             + "\n".join(steps.lines)[-3000:])
                        steps.take(chunk, on_line)
                finally:
                    stream.close()  # an interrupted read ends the build (the engine cancels it)
            if steps.image_id is None:
                raise InfraError(f"building image {ref} gave no image id:\n" + "\n".join(steps.lines)[-3000:])
            return steps.image_id
        except BaseException:
            self._remove_untagged(steps.made)
            if build_id:
                self._remove_late_steps(build_id)
            raise

    def _remove_late_steps(self, build_id: str, watch_s: float = LATE_STEP_S) -> None:
        """Remove the untagged step images of build `build_id` that its output never named: a
        step the engine was running when the client stopped reading (a COPY of the wheels) is
        still committed after the build is cancelled, up to the step's length later; so look
        for them for `watch_s` seconds."""
        deadline = time.monotonic() + watch_s
        while True:
            try:
                found = self.client.api.images(filters={"dangling": True, "label": f"{BUILD_LABEL}={build_id}"})
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                log.warning("could not look for the step images of an unfinished build: %s", exc)
                return
            self._remove_untagged([i["Id"] for i in sorted(found, key=lambda i: i.get("Created", 0))])
            if time.monotonic() > deadline:
                return
            time.sleep(0.25)

    def _remove_untagged(self, image_ids: list[str], patience_s: float = 5.0) -> None:
        """Remove the images of a build that did not finish, newest first, unless something
        tagged them meanwhile; one the cancelled build's last container still uses is retried
        until the engine has removed that container."""
        deadline = time.monotonic() + patience_s
        for image_id in reversed(image_ids):
            while True:
                try:
                    if not self.client.api.inspect_image(image_id).get("RepoTags"):
                        self.client.api.remove_image(image_id, noprune=True)
                    break
                except docker.errors.NotFound:
                    break
                except docker.errors.APIError as exc:
                    if exc.status_code != 409 or time.monotonic() > deadline:  # 409: in use
                        log.warning("could not remove image %s of an unfinished build: %s", image_id,
                                    exc.explanation or exc)
                        break
                    time.sleep(0.2)
                except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                    log.warning("could not remove image %s of an unfinished build: %s", image_id, exc)
                    return

    def images(self, label: str) -> list[tuple[str, str, int]]:
        """(tags, id, size) of local images carrying `label`."""
        with _translated("listing images"):
            found = self.client.images.list(filters={"label": label, "dangling": False})
        return [(", ".join(i.tags) or "<none>", i.short_id, i.attrs.get("Size", 0)) for i in found]

    # -- networks and containers ----------------------------------------------------------

    def create_network(self, name: str, labels: dict[str, str], internal: bool = False,
                       options: dict[str, str] | None = None, subnet: str | None = None) -> None:
        """A bridge network; `internal` ones get no route out (and cannot publish ports);
        `options` are the bridge driver's (com.docker.network.bridge.*); `subnet` is chosen by
        the engine when None. Raises `SubnetTaken` when another network holds `subnet`."""
        ipam = None
        if subnet:
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
        with _translated(f"creating network {name}"):
            try:
                self.client.networks.create(name, driver="bridge", labels=labels, internal=internal,
                                            options=options or {}, ipam=ipam, check_duplicate=True)
            except docker.errors.APIError as exc:
                if subnet and "overlap" in str(exc.explanation or exc).lower():
                    raise SubnetTaken(f"creating network {name}: {subnet} is taken") from None
                raise  # any other refusal: translated as every Docker error is

    def network_subnets(self) -> list[str]:
        """Every IPv4/IPv6 subnet the engine's networks hold (the engine host's bridge
        addresses among them: docker0's gateway is the host)."""
        with _translated("listing networks"):
            found = self.client.api.networks()
        return [c["Subnet"] for n in found for c in ((n.get("IPAM") or {}).get("Config") or []) if c.get("Subnet")]

    def network_subnet(self, name: str) -> str:
        """The (first) IPv4 subnet of network `name`."""
        with _translated(f"inspecting network {name}"):
            found = self.client.api.inspect_network(name)
        return next((c["Subnet"] for c in ((found.get("IPAM") or {}).get("Config") or [])
                     if c.get("Subnet") and ":" not in c["Subnet"]), "")

    def run_container(self, name: str, image: str, files: Sequence[FileToCopy] = (),
                      files_dir: str = "/run/mrctl", networks: Sequence[str] = (),
                      **options: Any) -> ContainerInfo:
        """Create a container, copy `files` into `files_dir`, attach it to the extra `networks`,
        then start it detached; `options` are docker-py `containers.create` options.

        The files go into a fresh anonymous volume mounted at `files_dir`: the engine refuses
        to copy into a read-only root filesystem but not into a volume, and a tmpfs would be
        mounted over them at start. Copied before the start, they are there when the process
        begins, and appear nowhere in the container's configuration (`docker inspect`). The
        volume goes with the container (`remove_container`). A container that fails before
        it runs is removed: no half-started container is left behind.
        """
        if files:
            options["mounts"] = [*options.get("mounts", []), docker.types.Mount(
                files_dir, None, type="volume", labels=options.get("labels"))]
        container_id = self.create_container(name, image, **options)
        try:
            if files:
                self.put_files(container_id, files_dir, files)
            for network in networks:
                self.connect(network, container_id)
            return self.start_container(container_id)
        except BaseException:
            self.remove_container(container_id)
            raise

    def create_container(self, name: str, image: str, **options: Any) -> str:
        """Create (not start) a container; returns its id."""
        with _translated(f"creating container {name}"):
            return self.client.containers.create(image, name=name, detach=True, **options).id

    def put_files(self, container_id: str, directory: str, files: Sequence[FileToCopy]) -> None:
        """Copy files into a container (created or running), with their owner and mode."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for f in files:
                entry = tarfile.TarInfo(f.name)
                entry.size, entry.mode, entry.uid, entry.gid = len(f.data), f.mode, f.uid, f.uid
                entry.mtime = int(time.time())
                tar.addfile(entry, io.BytesIO(f.data))
        with _translated(f"copying files into {container_id[:12]}:{directory}"):
            if not self.client.api.put_archive(container_id, directory, buffer.getvalue()):
                raise InfraError(f"the engine refused to copy files into {container_id[:12]}:{directory}")

    def connect(self, network: str, container_id: str) -> None:
        with _translated(f"connecting {container_id[:12]} to network {network}"):
            self.client.networks.get(network).connect(container_id)

    def start_container(self, container_id: str) -> ContainerInfo:
        with _translated(f"starting container {container_id[:12]}"):
            container = self.client.containers.get(container_id)
            container.start()
            container.reload()
            return _info(container)

    def container_address(self, name: str, network: str) -> str:
        """A container's IPv4 address on `network` ("" when it is not attached to it)."""
        with _translated(f"inspecting container {name}"):
            attrs = self.client.api.inspect_container(name)
        return str(((attrs.get("NetworkSettings") or {}).get("Networks") or {}).get(network, {}).get("IPAddress") or "")

    def containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        """Every container (running or not) carrying all of `labels`."""
        filters = label_filters(labels)
        with _translated("listing containers"):
            # a container removed between the listing and its inspection (a cluster tearing
            # down meanwhile) is skipped, not an error
            found = self.client.containers.list(all=True, filters=filters, ignore_removed=True)
        return sorted((_info(c) for c in found), key=lambda c: c.name)

    def containers_created(self, labels: dict[str, str], since: float) -> list[str]:
        """Names of containers carrying `labels` created since `since` (epoch seconds), removed
        or not, from the engine's event log (dockerd keeps its last 256 events: on a busy
        engine, `creations` sees them all)."""
        with _translated("reading the engine's events"):
            events = self.client.events(since=int(since), until=int(time.time()) + 1,
                                        filters=_creations(labels), decode=True)
            return [_event_name(e) for e in events]

    @contextlib.contextmanager
    def creations(self, labels: dict[str, str]) -> Iterator[list[str]]:
        """Names of containers carrying `labels` created while the block runs, as the engine
        reports them live, however many other events it has meanwhile."""
        with _translated("following the engine's events"):
            stream = self.client.events(filters=_creations(labels), decode=True)  # subscribed on return
        names: list[str] = []

        def read() -> None:
            with contextlib.suppress(Exception):  # until the stream is closed under it
                for event in stream:
                    names.append(_event_name(event))

        reader = threading.Thread(target=read, name="mrctl-creations", daemon=True)
        reader.start()
        try:
            yield names
        finally:
            stream.close()
            reader.join(timeout=5)

    def container(self, name: str) -> ContainerInfo | None:
        try:
            return _info(self.client.containers.get(name))
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise InfraError(f"inspecting container {name}: {exc.explanation or exc}") from None

    def logs(self, name: str, tail: int | str = "all", follow: bool = False) -> Iterator[bytes]:
        with _translated(f"reading logs of {name}"):
            container = self.client.containers.get(name)
            if not follow:
                yield container.logs(tail=tail, stdout=True, stderr=True)
                return
            stream = container.logs(tail=tail, stream=True, follow=True)
        with _translated(f"following logs of {name}"):
            yield from stream

    def kill(self, name: str, signal: str = "SIGKILL") -> None:
        with _translated(f"killing {name}"):
            self.client.containers.get(name).kill(signal=signal)

    def pause(self, name: str) -> None:
        with _translated(f"pausing {name}"):
            self.client.containers.get(name).pause()

    def unpause(self, name: str) -> None:
        with _translated(f"unpausing {name}"):
            self.client.containers.get(name).unpause()

    def remove_container(self, name_or_id: str) -> None:
        """Force-remove (kill + remove) a container; gone already is fine."""
        with removing(name_or_id, also_fine=(409,)):  # 409: removal already in progress
            self.client.api.remove_container(name_or_id, force=True, v=True)

    def networks(self, labels: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
        filters = label_filters(labels)
        with _translated("listing networks"):
            return [(n.name, n.attrs.get("Labels") or {}) for n in self.client.networks.list(filters=filters)]

    def volumes(self, labels: dict[str, str]) -> list[str]:
        """Names of the volumes carrying all of `labels`."""
        filters = label_filters(labels)
        with _translated("listing volumes"):
            return [v.name for v in self.client.volumes.list(filters=filters)]

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        with _translated(f"creating volume {name}"):
            self.client.volumes.create(name=name, labels=labels)

    def remove_volume(self, name: str) -> None:
        with removing(f"volume {name}"):
            self.client.volumes.get(name).remove(force=True)

    def memory_total(self) -> int:
        """The engine host's memory in bytes."""
        with _translated("reading the engine's info"):
            return int(self.client.info().get("MemTotal", 0))

    def remove_network(self, name: str) -> None:
        with removing(f"network {name}"):
            self.client.networks.get(name).remove()


def _info(container: Any) -> ContainerInfo:
    attrs = container.attrs
    state = attrs.get("State", {})
    ports: dict[str, int] = {}
    ips: dict[str, str] = {}
    for port, bindings in (attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
        if bindings:
            ports[port] = int(bindings[0]["HostPort"])
            ips[port] = bindings[0].get("HostIp") or "0.0.0.0"
    name = attrs.get("Name", container.name).lstrip("/")
    return ContainerInfo(
        id=container.id, name=name, status=state.get("Status", container.status),
        labels=dict(attrs.get("Config", {}).get("Labels") or {}),
        exit_code=state.get("ExitCode"), oom_killed=bool(state.get("OOMKilled")),
        host_ports=ports, host_ips=ips,
    )
