"""Images through a registry (`--registry`, swarm backend): pushed once, pulled by every node.

A registry is named as `docker tag` takes it: HOST[:PORT][/PATH], no scheme. HOST must be one
that Docker reads as a registry (it has a dot or a port, or is `localhost`): a bare word would
be a Docker Hub account instead. An engine speaks plain HTTP only to registries on 127.0.0.0/8
or in its `insecure-registries`; any other needs TLS.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from mrctl.errors import SpecError

if TYPE_CHECKING:  # checking --registry needs no engine and no image store
    from mrctl.dockerapi.host import DockerHost
    from mrctl.images.build import ClusterImages

log = logging.getLogger(__name__)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = re.compile(
    rf"(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:]+\])(?::(?P<port>\d{{1,5}}))?(?:/{_PATH_PART})*")


def check_registry(registry: str) -> str:
    """`registry` if Docker reads it as a registry, else a SpecError saying what is wrong."""
    found = _REGISTRY.fullmatch(registry)
    if not found or (found["port"] and not 0 < int(found["port"]) < 65536):
        raise SpecError(f"--registry {registry!r}: expected HOST, HOST:PORT or HOST:PORT/PATH as docker tag "
                        "takes it, e.g. 127.0.0.1:5000 or registry.example.org/me (no scheme)")
    host = found["host"]
    if not (found["port"] or "." in host or host.startswith("[") or host == "localhost"):
        raise SpecError(f"--registry {registry!r}: Docker would read {host!r} as a Docker Hub account, not a "
                        f"registry: give its port ({host}:5000) or its full name ({host}.example.org)")
    return registry


def in_registry(registry: str, ref: str) -> str:
    """`ref` (NAME:TAG) as named in `registry`."""
    return f"{registry}/{ref.rsplit('/', 1)[-1]}"


def push_to_registry(host: DockerHost, images: ClusterImages, registry: str,
                     on_progress: Callable[[str], None] = log.info) -> ClusterImages:
    """Push the cluster's images into `registry`, from which every node of a swarm pulls them;
    the images as named there (their tags unchanged), pinned to the digests pushed."""
    from mrctl.dockerapi import swarm as dockerswarm

    named = {}
    for ref in dict.fromkeys((images.worker, images.redis)):
        on_progress(f"pushing {ref} to {in_registry(registry, ref)} ...")
        named[ref] = dockerswarm.push_image(host, ref, in_registry(registry, ref))
    return dataclasses.replace(images, worker=named[images.worker], redis=named[images.redis])
