"""Sizes, parsed in one place: as users write them in specs and flags (`4MiB`, `512KiB`, `65536`,
`1gb`), and in the two notations mrctl hands on to other programs, Redis's and Docker's, whose
units differ (Redis's `1g` is 10**9 bytes, Docker's 2**30)."""

from __future__ import annotations

import re
from typing import Any

from mrctl.errors import SpecError

USER_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1 << 20, "mb": 10**6,
              "mib": 1 << 20, "g": 1 << 30, "gb": 10**9, "gib": 1 << 30}
# Redis's memory notation (its `memtoll`): k/m/g are powers of 1000, kb/mb/gb of 1024.
REDIS_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 2**10, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30}
# Docker's (`--memory 512m`): every unit a power of 1024.
DOCKER_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def size_in(text: Any, units: dict[str, int], fractions: bool = True) -> int | None:
    """`text` as bytes in the notation whose units are `units` (case-insensitive), or None when
    it is not one. Without `fractions`, `1.5g` is not one (Redis and Docker take whole numbers)."""
    match = _SIZE.fullmatch(str(text))
    if match is None or match.group(2).lower() not in units or (not fractions and "." in match.group(1)):
        return None
    return int(float(match.group(1)) * units[match.group(2).lower()])


def parse_redis_memory(value: str) -> str:
    """`--redis-memory`: a size of at least 16 MiB, as bytes for redis-server's maxmemory.
    0 would mean "unlimited" to Redis, which breaks the promise that a full Redis fails the
    job instead of swallowing the host's memory."""
    size = 0 if re.fullmatch(r"\s*0+(\.0*)?\s*[a-zA-Z]*\s*", str(value)) else parse_size(value, "--redis-memory")
    if size < 16 << 20:
        raise SpecError(f"--redis-memory: {value} is less than 16MiB; Redis needs room for the "
                        "job's chunks and intermediate data (0, Redis's 'unlimited', is refused)")
    return str(size)


def parse_size(value: Any, where: str) -> int:
    """Bytes from an integer or a size string such as 512KiB, 4MiB, 1GB."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    size = size_in(value, USER_UNITS) if isinstance(value, str) else None
    if size:
        return size
    raise SpecError(f"{where}: expected a size in bytes such as 4MiB or 65536, got {value!r}")
