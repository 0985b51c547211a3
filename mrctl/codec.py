"""Serialization of keys and values: msgpack of plain data, never pickle.

msgpack reads arrays back as tuples (`use_list=False`) so that composite keys stay hashable
and group the same way in every process.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack


def pack(obj: Any) -> bytes:
    """Encode plain data (str, int, float, bool, None, lists, tuples, dicts)."""
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"cannot encode {obj!r}: keys and values must be plain data ({exc})") from None


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=False)


def encode_key(key: Any) -> bytes:
    """The stable byte encoding of a key: the input of the default partitioner."""
    return pack(key)


def hashable(key: Any) -> Any:
    """A key as it groups: lists become tuples, recursively."""
    if isinstance(key, list | tuple):
        return tuple(hashable(k) for k in key)
    return key


def sort_key(key: Any) -> tuple:
    """Total order over mixed plain-data keys: None < bools < numbers < strings < the rest."""
    if key is None:
        return (0, 0)
    if isinstance(key, bool):
        return (1, key)
    if isinstance(key, int | float):
        return (2, -math.inf if key != key else key)
    if isinstance(key, str):
        return (3, key)
    return (4, json.dumps(key, sort_keys=True, default=str))
