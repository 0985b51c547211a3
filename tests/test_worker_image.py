"""The worker image is one image per source, whatever extras the host has installed: a first run
after `pip install mrctl` and a run after `pip install 'mrctl[mrjob]'` (or the test extra) use the
same image, so the second does not build it again (seen in CI: the test run rebuilt it, 45 s with
every Docker test waiting)."""

from __future__ import annotations

import importlib.metadata
import uuid

import pytest
from conftest import LABELS

from mrctl.backends.docker import extra_labels
from mrctl.images.build import WORKER_EXTRAS, ensure_images, source_hash


def _without(monkeypatch, missing: str) -> None:
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name == missing:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)


def test_the_worker_image_is_the_same_with_or_without_mrjob_installed_here(monkeypatch):
    installed = importlib.metadata.version("mrjob")  # the test extra installs it
    with_it = source_hash("sha256:base")
    _without(monkeypatch, "mrjob")
    without_it = source_hash("sha256:base")
    if installed == WORKER_EXTRAS["mrjob"]:
        assert with_it == without_it
    else:  # another version installed here is the one the workers get: another image
        assert with_it != without_it


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
def test_the_worker_image_holds_mrjob_at_the_version_installed_here(docker_host):
    images = ensure_images(docker_host)
    name = f"mrctl-test-extras-{uuid.uuid4().hex[:6]}"
    docker_host.run_container(name, images.worker, entrypoint=["python3"],
                              command=["-c", "import importlib.metadata as m; print(m.version('mrjob'))"],
                              labels=extra_labels(LABELS))
    try:
        printed = b"".join(docker_host.logs(name, follow=True)).decode().strip()
    finally:
        docker_host.remove_container(name)
    assert printed == importlib.metadata.version("mrjob")
