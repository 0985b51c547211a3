"""Sizes as users write them in specs and flags: `4MiB`, `512KiB`, `65536`, `1gb`."""

from __future__ import annotations

import re
from typing import Any

from mrctl.errors import SpecError

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1 << 20, "mb": 10**6,
          "mib": 1 << 20, "g": 1 << 30, "gb": 10**9, "gib": 1 << 30}


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
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if isinstance(value, str) and match and match.group(2).lower() in _UNITS:
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
        if size > 0:
            return size
    raise SpecError(f"{where}: expected a size in bytes such as 4MiB or 65536, got {value!r}")
