"""One size parser for three notations: a user's (specs, flags), Redis's and Docker's."""

import pytest

from mrctl.backends.redis_config import memory_bytes
from mrctl.backends.swarm import _bytes as docker_bytes
from mrctl.errors import InfraError, SpecError
from mrctl.spec.sizes import parse_size


@pytest.mark.parametrize(("text", "expected"), [
    ("4MiB", 4 * 1024 * 1024), ("512KiB", 512 * 1024), ("65536", 65536), ("1gb", 1000**3),
    ("1.5m", int(1.5 * 1024 * 1024)), (" 2 k ", 2048), (4096, 4096),
])
def test_user_sizes(text, expected):
    assert parse_size(text, "chunk_size") == expected


@pytest.mark.parametrize("text", ["0", "-1", "4 parsecs", "", "1e6", True, 0])
def test_user_sizes_refused_name_where(text):
    with pytest.raises(SpecError, match="chunk_size: expected a size"):
        parse_size(text, "chunk_size")


def test_redis_and_docker_read_the_same_letters_differently():
    # Redis: k/m/g powers of 1000 and kb/mb/gb of 1024; Docker: every unit a power of 1024
    assert (memory_bytes("1g"), memory_bytes("1gb"), memory_bytes("100m")) == (1000**3, 1024**3, 100 * 1000**2)
    assert (docker_bytes("1g"), docker_bytes("512m"), docker_bytes("64k")) == (1024**3, 512 * 1024**2, 64 * 1024)
    assert memory_bytes("1.5gb") is None and memory_bytes("12 mb") is None
    with pytest.raises(InfraError, match="worker memory limit '1.5g'"):
        docker_bytes("1.5g")
