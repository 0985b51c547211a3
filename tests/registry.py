"""A real image registry on 127.0.0.1 for the tests of --registry, owned by the session.

Debian's docker-registry (the CNCF distribution registry, a static Go program) is unpacked from
the host's mirror into the session's temp dir (tests/served.py, as for sshd), and serves its
own storage there. A Docker engine speaks plain HTTP to a registry on 127.0.0.0/8 by default, so
no TLS and no engine setting is needed. What the tests push (tags named after this registry's
address) they remove from the engine with `untag`.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from served import free_port, stop, unpack_from_mirror


class Registry:
    """docker-registry on 127.0.0.1:<free port>; `address` is HOST:PORT as --registry takes it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        unpack_from_mirror(["docker-registry"], root / "pkg")
        self.address = f"127.0.0.1:{free_port()}"
        (root / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n"
            f"  filesystem:\n    rootdirectory: {root / 'data'}\nhttp:\n  addr: {self.address}\n")
        self._log = (root / "registry.log").open("wb")
        self.proc = subprocess.Popen([str(root / "pkg" / "usr" / "bin" / "docker-registry"), "serve",
                                      str(root / "config.yml")], stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_serving()
        except BaseException:
            self.close()
            raise

    def _wait_serving(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.get("/v2/") is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not serve {self.address}: {self.log()}")
            time.sleep(0.1)

    def get(self, path: str) -> dict | None:
        """The registry's JSON answer to GET `path` (its HTTP API), None when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://{self.address}{path}", timeout=5) as response:
                return json.loads(response.read() or b"{}")
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def tags(self, repository: str) -> list[str]:
        return (self.get(f"/v2/{repository}/tags/list") or {}).get("tags") or []

    def log(self) -> str:
        return (self.root / "registry.log").read_text(errors="replace")[-3000:]

    def close(self) -> None:
        stop(self.proc)
        self._log.close()


def untag(docker_host, address: str) -> list[str]:
    """Remove from the engine the tags named after the registry at `address` (what pushing made;
    the images themselves stay under their own names). The tags removed."""
    removed = []
    for image in docker_host.client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{address}/"):
                docker_host.client.images.remove(tag)
                removed.append(tag)
    return removed
