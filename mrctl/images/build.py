"""The images a cluster runs: the worker image (built from Dockerfile.worker) and Redis.

Two ways to get the bases:
- online: the official `python:3.11-slim` and `redis:7` images, present or pulled;
- offline (a Docker engine without a registry): a base built from the packages of the host's
  configured Debian mirror (python3, python3-venv, redis-server and the Essential set; see
  mrctl.images.debian: no debootstrap, no root), imported with `docker import`, used for both roles.
The worker image's tag carries a hash of mrctl's source, the Dockerfile and the base image, so
it is rebuilt exactly when one of them changes, and reused instantly otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mrctl.dockerapi import swarm as dockerswarm
from mrctl.dockerapi.host import DockerHost
from mrctl.errors import InfraError
from mrctl.host.dirs import cache_lock
from mrctl.images import debian, rootfs

log = logging.getLogger(__name__)

ONLINE_PYTHON = "python:3.11-slim"
ONLINE_REDIS = "redis:7"
BASE_REPO = "mrctl-base"
WORKER_REPO = "mrctl-worker"
LABEL_IMAGE = "mrctl.image"  # base | worker
BASE_PACKAGES = ("python3", "python3-venv", "redis-server")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # mrctl/: its source is hashed into the tag
PROJECT_ROOT = PACKAGE_DIR.parent
Progress = Callable[[str], None]
# Only the host draws pictures (mrctl timeline) and serves the web page (mrctl ui): the worker
# image leaves these dependencies out, about 210 MB of matplotlib, numpy, pillow and fonts, and
# the web stack, that no worker imports.
HOST_ONLY = frozenset({"matplotlib", "starlette", "uvicorn"})
# Extras every worker image holds, at the version installed here, else at the version given:
# the same image whether or not the host has them, so that `pip install 'mrctl[mrjob]'` (or the
# test extra) after a first run does not make the next run build the worker image again.
# mrjob is pure Python (about 1.5 MB with its wheel's files); `mrctl mrjob` runs it in workers.
WORKER_EXTRAS = {"mrjob": "0.7.4"}


@dataclass(frozen=True)
class ClusterImages:
    worker: str  # image to run workers from
    redis: str  # image to run redis-server from
    redis_command: list[str]  # its executable; the cluster appends the options
    offline: bool


def ensure_images(host: DockerHost, on_progress: Progress = log.info,
                  offline: bool | None = None) -> ClusterImages:
    """Make sure both images exist, pulling or building what is missing; fast when they do.
    Processes of this host build one at a time: the others wait, then find the images."""
    with cache_lock("images", on_progress):
        return _ensure_images(host, on_progress, offline)


def _ensure_images(host: DockerHost, on_progress: Progress, offline: bool | None) -> ClusterImages:
    if offline is None and os.environ.get("MRCTL_OFFLINE") == "1":
        offline = True
    if offline is None:
        offline = _choose_offline(host, on_progress)
    if offline:
        base = offline_base_ref()
        if host.image_id(base) is None:
            build_offline_base(host, on_progress)
        return ClusterImages(_worker_image(host, base, on_progress), base,
                             ["redis-server"], offline=True)
    for ref in (ONLINE_PYTHON, ONLINE_REDIS):
        if host.image_id(ref) is None and not (host.registry_answers(ref) and host.try_pull(ref)):
            raise InfraError(f"cannot pull {ref}: no registry reachable. Use --offline to build "
                             "the bases from Debian packages.")
    return ClusterImages(_worker_image(host, ONLINE_PYTHON, on_progress), ONLINE_REDIS,
                         ["redis-server"], offline=False)


def _choose_offline(host: DockerHost, on_progress: Progress) -> bool:
    if all(host.image_id(ref) for ref in (ONLINE_PYTHON, ONLINE_REDIS)):
        return False
    if host.images(f"{LABEL_IMAGE}=base"):
        return True
    if host.registry_answers(ONLINE_PYTHON):
        on_progress(f"pulling {ONLINE_PYTHON} and {ONLINE_REDIS} ...")
        if all(host.image_id(ref) or host.try_pull(ref) for ref in (ONLINE_PYTHON, ONLINE_REDIS)):
            return False
    on_progress("no registry reachable: building a base image from the host's Debian mirror "
                "(about a minute, once)")
    return True


# -- the offline base -------------------------------------------------------------------------

def offline_base_ref() -> str:
    return f"{BASE_REPO}:{debian.apt_source().suite}"


def build_offline_base(host: DockerHost, on_progress: Progress = log.info) -> str:
    """A minimal Debian with python3 and redis-server, from the host's configured mirror.

    No debootstrap and no root: the packages' data is unpacked into one tar stream (owned by
    root inside the tar) and given to `docker import`. Downloads are cached.
    """
    source = debian.apt_source()
    ref = f"{BASE_REPO}:{source.suite}"
    archive = debian.Archive(source, on_progress)
    packages = archive.closure(BASE_PACKAGES, essential=True)
    debs = archive.download(packages)
    on_progress(f"unpacking {len(debs)} packages and importing them as {ref} ...")
    with tempfile.TemporaryDirectory(prefix="mrctl-base-") as work:
        tar_path = Path(work) / "rootfs.tar"
        with tar_path.open("wb") as out:
            rootfs.write_rootfs(debs, out)
        return host.import_rootfs(str(tar_path), ref, [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["/bin/bash"]', f"LABEL {LABEL_IMAGE}=base",
        ])


def _run(command: list[str], logfile: Path) -> None:
    """Run a build step; on failure, the end of its output goes into the error."""
    with logfile.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait()
        except BaseException:  # interrupted: do not leave the step running
            proc.kill()
            proc.wait()
            raise
    if code != 0:
        tail = logfile.read_text(errors="replace")[-3000:]
        raise InfraError(f"{command[0]} failed (exit {code}):\n{tail}")


# -- the worker image -------------------------------------------------------------------------

def source_hash(base_id: str) -> str:
    """A hash of everything the worker image is made of: mrctl's source, Dockerfile, base,
    and the extras it holds."""
    digest = hashlib.sha256(base_id.encode() + "".join(installed_extras()).encode())
    files = sorted(PACKAGE_DIR.rglob("*.py")) + [PROJECT_ROOT / "Dockerfile.worker",
                                                 PROJECT_ROOT / "pyproject.toml"]
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def worker_requirements() -> list[str]:
    """mrctl's dependencies (pyproject.toml) that a worker needs: all but HOST_ONLY, and the
    WORKER_EXTRAS."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [d for d in project["dependencies"] if _name(d) not in HOST_ONLY] + installed_extras()


def installed_extras() -> list[str]:
    """WORKER_EXTRAS pinned: to the version installed here, else to WORKER_EXTRAS's."""
    found = []
    for name, default in WORKER_EXTRAS.items():
        try:
            found.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name}=={default}")
    return found


def _name(requirement: str) -> str:
    return re.split(r"[^A-Za-z0-9._-]", requirement.strip(), maxsplit=1)[0].lower()


def _worker_image(host: DockerHost, base: str, on_progress: Progress) -> str:
    base_id = host.image_id(base)
    if base_id is None:
        raise InfraError(f"base image {base} is missing")
    if not (PROJECT_ROOT / "pyproject.toml").exists():
        raise InfraError("building the worker image needs mrctl's source checkout "
                         "(install it with pip install -e from a clone)")
    tag = f"{WORKER_REPO}:{source_hash(base_id)}"
    if host.image_id(tag):
        return tag
    on_progress(f"building worker image {tag} from {base} ...")
    context = Path(tempfile.mkdtemp(prefix="mrctl-build-"))
    try:
        shutil.copy(PROJECT_ROOT / "Dockerfile.worker", context / "Dockerfile.worker")
        # async-timeout: redis-py needs it on Python < 3.11.3 (Debian bookworm's 3.11.2), which a
        # newer host Python does not resolve by itself.
        # mrctl without its dependencies, then the worker's own (the Dockerfile installs exactly
        # the wheels it finds, --no-deps, so HOST_ONLY stays out).
        wheels = str(context / "wheels")
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels,
              str(PROJECT_ROOT)], context / "pip.log")
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", wheels,
              *worker_requirements(), "async-timeout>=4.0.3"], context / "pip-deps.log")
        host.build(str(context), "Dockerfile.worker", tag, {"BASE": base},
                   {LABEL_IMAGE: "worker", "mrctl.source-hash": tag.split(":")[1]},
                   on_line=lambda line: log.debug("build: %s", line))
    finally:
        shutil.rmtree(context, ignore_errors=True)
    on_progress(f"built {tag}")
    return tag


def push_to_engines(host: DockerHost, images: ClusterImages, urls: list[str],
                    on_progress: Progress = log.info) -> list[str]:
    """Copy the cluster's images to other Docker engines (a swarm's other nodes) without a
    registry: `docker save` here, `docker load` there, streamed through this process. An
    engine that has an image already is skipped. Returns the refs copied, as `url: ref`."""
    copied = []
    for url in urls:
        with DockerHost(timeout=600, base_url=url) as node:
            for ref in dict.fromkeys((images.worker, images.redis)):
                if node.image_id(ref) == host.image_id(ref):
                    on_progress(f"{url}: {ref} is there already")
                    continue
                on_progress(f"{url}: loading {ref} ...")
                dockerswarm.load_image(node, dockerswarm.save_image(host, ref))
                copied.append(f"{url}: {ref}")
    return copied


@dataclass(frozen=True)
class ImageState:
    base: str | None  # the base in use (online or offline), None when neither is here
    worker_current: str | None  # the worker image for this source and base, if built
    worker_stale: tuple[str, ...]  # worker images of other sources or bases


def image_state(host: DockerHost) -> ImageState:
    """Which of mrctl's images are here, without pulling or building anything."""
    base = None
    if all(host.image_id(ref) for ref in (ONLINE_PYTHON, ONLINE_REDIS)):
        base = ONLINE_PYTHON
    else:
        offline = [t for tags, _, _ in host.images(f"{LABEL_IMAGE}=base") for t in tags.split(", ")]
        # its own name first (a registry's name for it, from --registry, sorts before it)
        base = offline_base_ref() if offline_base_ref() in offline else offline[0] if offline else None
    current = None
    if base is not None and (base_id := host.image_id(base)):
        current = f"{WORKER_REPO}:{source_hash(base_id)}"
    workers = [t for tags, _, _ in host.images(f"{LABEL_IMAGE}=worker") for t in tags.split(", ")]
    return ImageState(base, current if current in workers else None,  # (and its names in registries)
                      tuple(t for t in workers if t.rsplit("/", 1)[-1] != current))


def list_images(host: DockerHost) -> list[tuple[str, str, str, str]]:
    """(role, tags, id, size) of the images mrctl manages."""
    rows = []
    for role in ("base", "worker"):
        for tags, short_id, size in host.images(f"{LABEL_IMAGE}={role}"):
            rows.append((role, tags, short_id, f"{size / 1e6:.0f} MB"))
    return rows
