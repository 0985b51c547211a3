"""Servers the tests run on 127.0.0.1 from programs unpacked out of the host's Debian mirror (as
mrctl fetches redis-server: no apt, nothing installed): sshd (tests/sshd.py) and an image
registry (tests/registry.py). A free port, the unpacking, and the stop they share."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from mrctl.images import debian, rootfs
from mrctl.images.fetched import HOST_ONLY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unpack_from_mirror(packages: list[str], target: Path) -> None:
    """`packages`, with the dependencies this machine lacks, unpacked under `target`."""
    archive = debian.Archive(debian.apt_source(), lambda message: None)
    found = archive.closure(packages, skip=debian.installed_packages() | set(HOST_ONLY))
    rootfs.unpack(archive.download(found), target)


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate `proc`, and kill it if it has not ended within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
