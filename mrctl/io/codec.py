"""Serialization of keys and values: msgpack of plain data, never pickle.

msgpack reads arrays back as tuples (`use_list=False`) so that composite keys stay hashable
and group the same way in every process.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from typing import IO, Any

import msgpack
import zstandard


def pack(obj: Any) -> bytes:
    """Encode plain data (str, int, float, bool, None, lists, tuples, dicts)."""
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        text = repr(obj)
        text = text if len(text) <= 200 else text[:200] + f"… ({len(text)} characters)"
        raise TypeError(f"cannot encode {text}: keys and values must be plain data ({exc})") from None


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=False)


# Intermediate blobs (a map task's partition, a reduce task's output) of at least COMPRESS_MIN
# bytes travel zstd-compressed (level 1: about 150 MB/s and half the size for text here);
# smaller ones, like most of a word count's, are not worth it. A zstd frame starts with its
# magic number, which no msgpack blob can (0x28 is a bare integer, never an array header).
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COMPRESS_MIN = 16 << 10
_zstd = threading.local()


def pack_blob(obj: Any) -> bytes:
    """pack(), zstd-compressed when large enough to pay."""
    blob = pack(obj)
    if len(blob) < COMPRESS_MIN:
        return blob
    if not hasattr(_zstd, "compressor"):  # one per thread: zstandard's objects are not shared
        _zstd.compressor = zstandard.ZstdCompressor(level=1)
    return _zstd.compressor.compress(blob)


def unpack_blob(blob: bytes) -> Any:
    """unpack() of a pack_blob() blob, compressed or not."""
    return unpack(expand(blob))


def expand(blob: bytes) -> bytes:
    """A blob's msgpack bytes: decompressed if it is a zstd frame."""
    if blob[:4] != ZSTD_MAGIC:
        return blob
    if not hasattr(_zstd, "decompressor"):
        _zstd.decompressor = zstandard.ZstdDecompressor()
    return _zstd.decompressor.decompress(blob)


def stream_pairs(raw: IO[bytes]) -> Iterator[tuple[Any, Any]]:
    """The (key, value) pairs of a pack_blob() of a flat list [k1, v1, k2, v2, ...], read from
    a seekable stream one pair at a time (zstd's stream reader, msgpack's streaming Unpacker):
    however large the blob, only a pair and the readers' buffers are held decoded, not the
    whole list (which takes some ten times the blob's bytes as Python objects)."""
    stream: IO[bytes] = raw
    magic = raw.read(4)
    raw.seek(0)
    if magic == ZSTD_MAGIC:
        stream = zstandard.ZstdDecompressor().stream_reader(raw)
    unpacker = msgpack.Unpacker(stream, raw=False, use_list=False, strict_map_key=False, max_buffer_size=0)
    for _ in range(unpacker.read_array_header() // 2):
        yield unpacker.unpack(), unpacker.unpack()


def encode_key(key: Any) -> bytes:
    """The stable byte encoding of a key: the input of the default partitioner for a key that
    is not a str (a str is partitioned by its UTF-8 bytes)."""
    return pack(key)


def group_key(key: Any) -> str | bytes:
    """The identity a key groups and partitions by, the same on every path and in every process:
    a str is itself; anything else is its msgpack encoding. So `1`, `1.0`, `True` and `"1"` are
    four keys (Python's `==` would merge the first three), and a list groups as a tuple."""
    return key if type(key) is str else pack(key)


def key_of(ident: str | bytes) -> Any:
    """The key a `group_key` identity stands for (lists come back as tuples)."""
    return ident if type(ident) is str else unpack(ident)


PLAIN_SCALARS = frozenset((str, int, float, bool, type(None)))


def plain_error(obj: Any) -> str | None:
    """Why `obj` is not plain data (naming the offending type), or None when it is.

    Every emitted key and value goes through this, so it is written for speed: plain loops,
    and a scalar item is let through without a call."""
    kind = type(obj)
    if kind in PLAIN_SCALARS:
        return None
    if kind is list or kind is tuple:
        for item in obj:
            if type(item) not in PLAIN_SCALARS and (why := plain_error(item)):
                return why
        return None
    if kind is dict:
        for k, v in obj.items():
            if type(k) not in PLAIN_SCALARS and (why := plain_error(k)):
                return why
            if type(v) not in PLAIN_SCALARS and (why := plain_error(v)):
                return why
        return None
    return f"a {kind.__name__}"


def sort_key(key: Any) -> tuple:
    """Total order over mixed plain-data keys: None < bools < numbers < strings < the rest.

    Type-exact, like `group_key`: equal numbers sort int first, then float (-0.0 before 0.0),
    so that keys that are distinct never tie and the order never depends on where they came from.
    """
    if key is None:
        return (0, 0)
    if isinstance(key, bool):
        return (1, key)
    if isinstance(key, int):
        return (2, key, 0)
    if isinstance(key, float):
        return (2, -math.inf if key != key else key, 1, math.copysign(1.0, key))
    if isinstance(key, str):
        return (3, key)
    return (4, json.dumps(key, sort_keys=True, default=str))


def value_sort_key(value: Any) -> tuple:
    """Total order over plain-data values for `sort_values` (a secondary sort): sort_key's
    order, except that lists and tuples compare element by element (so `(9, "x")` comes before
    `(10, "a")`, as in Python); dicts by their JSON text, after every list."""
    if isinstance(value, list | tuple):
        return (4, tuple(value_sort_key(v) for v in value))
    if isinstance(value, dict):
        return (5, json.dumps(value, sort_keys=True, default=str))
    return sort_key(value)
