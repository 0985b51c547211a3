"""Running one map or reduce task on plain bytes: no Redis, no processes.

Workers call these between a claim and a commit; the inline backend calls them in a loop.

Blob layout (msgpack): a flat list [key1, values1, key2, values2, ...] where each `values`
is the list of values of that key, in emission order.
"""

from __future__ import annotations

import itertools
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import GeneratorType
from typing import Any

from mrctl.errors import JobCodeError, bounded_message
from mrctl.io import codec
from mrctl.io.formats import TEXT_CHUNK, ChunkFormat
from mrctl.io.formats.records import ChunkRecords, decompress, folds_crlf
from mrctl.job import Mapper, Reducer, not_a_pair, reduce_pairs, returned_pairs, split_lines, teardown_pairs
from mrctl.spec.bad_records import SAMPLES_KEPT

_REPLACEMENT = "\ufffd".encode()


class InputDecodeError(ValueError):
    """Undecodable bytes in the input under the `strict` encoding policy."""


class TaskInterrupted(Exception):
    """Raised into user code by the framework (a timeout, a cancellation): it ends the attempt
    and is never taken for a bad record."""


@dataclass(frozen=True)
class MapResult:
    blobs: dict[int, bytes]  # partition -> blob; empty partitions are absent
    records_in: int
    records_out: int
    decode_errors: int
    bad_records: int = 0  # records skipped because parsing or `map` raised (bad_records: skip)
    bad_samples: tuple[tuple[int, str], ...] = ()  # the first few: (line in the chunk, 0-based; error)


@dataclass
class _Skipped:
    """Records skipped in one map task: how many, and the first SAMPLES_KEPT of them."""

    count: int = 0
    samples: list[tuple[int, str]] = field(default_factory=list)

    def add(self, index: int, exc: Exception) -> None:
        self.count += 1
        if len(self.samples) < SAMPLES_KEPT:
            self.samples.append((getattr(exc, "mrctl_line", index), bounded_message(exc)))


@dataclass(frozen=True)
class ReduceResult:
    pairs: list[tuple[Any, Any]]  # sorted by codec.sort_key of the key
    records_in: int


def decode_text(data: bytes, errors: str = "replace", fold_crlf: bool = True) -> tuple[str, int]:
    """A chunk as text with "\n" line endings ("\r\n" folded, unless not `fold_crlf`); count
    undecodable bytes replaced.

    Under errors="strict", undecodable bytes raise InputDecodeError naming the line (0-based,
    within the chunk, as `mrctl_line`).
    """
    try:
        text = data.decode("utf-8")
        bad = 0
    except UnicodeDecodeError as exc:
        if errors == "strict":
            err = InputDecodeError(
                f"undecodable bytes {data[exc.start:exc.end]!r} (not UTF-8) with encoding: strict"
            )
            err.mrctl_line = data.count(b"\n", 0, exc.start)  # type: ignore[attr-defined]
            raise err from None
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - data.count(_REPLACEMENT)
    if fold_crlf and "\r" in text:
        text = text.replace("\r\n", "\n")
    return text, bad


def run_map(
    mapper: Mapper, combiner: Reducer | None, data: bytes, partitions: int,
    errors: str = "replace", fmt: ChunkFormat = TEXT_CHUNK, skip_bad: bool = False,
) -> MapResult:
    """Map every record of a chunk (a line of text, or as `fmt` says: a decompressed file,
    JSON values, CSV rows, ...), combine per key if a combiner is given, partition. With
    `partitions` 0 (a map-only job) the pairs stay as emitted, in order, in one blob (0).

    With `skip_bad` (bad_records policy skip), a record whose parsing or `map` raises is
    skipped: its pairs, even those yielded before the exception, are dropped, and it is counted
    in the result.
    """
    skipped = _Skipped() if skip_bad else None
    counted = [0]
    if fmt.kind == "pairs":  # a later step's input: the previous step's output pairs
        flat, bad = codec.unpack_blob(data) if data else [], 0
        counted[0] = len(flat) // 2
        mapper.setup()
        outs = _mapped_kv(mapper, flat, skipped)
    else:
        if fmt.compression:
            data = decompress(data, fmt.compression)
        text, bad = decode_text(data, errors, folds_crlf(fmt))
        mapper.setup()
        if fmt.kind == "text":
            counted[0] = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
            outs = _mapped_lines(mapper, text, skipped)
        else:
            outs = _mapped_records(mapper, ChunkRecords(text, fmt), counted, skipped)
    if partitions == 0:
        return _map_only(mapper, outs, counted, bad, skipped)
    groups = _group(outs, mapper)
    records_in = counted[0]
    for k, v in teardown_pairs(mapper):
        _add(groups, k, v)
    if combiner is not None:
        groups = _combine(combiner, groups)
    buckets: dict[int, list[Any]] = defaultdict(list)
    records_out = 0
    custom = type(mapper).partition is not Mapper.partition
    for ident, values in groups.items():
        key = codec.key_of(ident)
        _check_plain(key, values, "the mapper")
        bucket = buckets[mapper.partition(key, partitions) if custom else _partition_of(ident, partitions)]
        bucket.append(key)
        bucket.append(values)
        records_out += len(values)
    blobs = {p: codec.pack_blob(flat) for p, flat in buckets.items()}
    if skipped is None:
        return MapResult(blobs, records_in, records_out, bad)
    return MapResult(blobs, records_in, records_out, bad, skipped.count, tuple(skipped.samples))


# A map task's records reach the grouping loop as (index, pairs) items: one per record (a
# line, a parsed record, a pair of the step before), the record's 0-based index in the chunk
# and its `map` call's pairs, not yet iterated (a generator, usually); or one item for a whole
# `map_chunk` call, whose index is None (its exceptions cannot be pinned to one record). The
# loop that iterates the pairs tags an exception with the index of the record being iterated:
# one nested loop per task, not a chain of generators resumed for every pair.
Outs = Iterable[tuple[int | None, Iterable[tuple[Any, Any]]]]


def _map_only(mapper: Mapper, outs: Outs, counted: list[int], bad: int, skipped: _Skipped | None) -> MapResult:
    """A map-only task's result: every pair as emitted (teardown's last), in one blob."""
    flat: list[Any] = []
    index = None
    try:
        for index, out in itertools.chain(outs, [(None, teardown_pairs(mapper))]):  # noqa: B007 - read in the handler
            for key, value in out:
                _check_plain(key, [value], "the mapper")
                flat += (key, value)
    except Exception as exc:
        if (blamed := _blamed(exc, index, mapper)) is exc:
            raise
        raise blamed from None
    blobs = {0: codec.pack_blob(flat)} if flat else {}
    extra = (skipped.count, tuple(skipped.samples)) if skipped is not None else ()
    return MapResult(blobs, counted[0], len(flat) // 2, bad, *extra)


def _mapped_lines(mapper: Mapper, text: str, skipped: _Skipped | None = None) -> Outs:
    """The chunk's lines as (line index, pairs of `map(line)`), or one item for a `map_chunk`
    override; given `skipped`, a line whose `map` raises is skipped and counted there."""
    if type(mapper).map_chunk is not Mapper.map_chunk:
        yield None, returned_pairs(mapper.map_chunk(text), mapper, "map_chunk")
        return
    map_line = mapper.map
    if skipped is not None:
        yield from _skipping_bad(enumerate(split_lines(text)),
                                 lambda line, index: returned_pairs(map_line(line), mapper), skipped)
        return
    index = 0
    try:
        for index, line in enumerate(split_lines(text)):  # noqa: B007 - index is read in the handler
            out = map_line(line)  # a generator, unless `return` was written for `yield`
            yield index, out if type(out) is GeneratorType else returned_pairs(out, mapper)
    except Exception as exc:
        exc.mrctl_line = index  # type: ignore[attr-defined]
        raise


def _mapped_records(mapper: Mapper, records: ChunkRecords, counted: list[int],
                    skipped: _Skipped | None = None) -> Outs:
    """(line where the record starts, pairs of its `map` call), one per parsed record (map_chunk
    is for text only); an exception is tagged with that line unless it names its own (BadRecord
    does); given `skipped`, the record is skipped and counted there instead."""
    map_record, parse = mapper.map, records.parse
    if skipped is not None:
        yield from _skipping_bad(_counting(records, counted),
                                 lambda raw, index: returned_pairs(map_record(parse(raw, index)), mapper), skipped)
        return
    index = 0
    try:
        for index, raw in _counting(records, counted):  # noqa: B007 - index is read in the handler
            out = map_record(parse(raw, index))
            yield index, out if type(out) is GeneratorType else returned_pairs(out, mapper)
    except Exception as exc:
        if not hasattr(exc, "mrctl_line"):
            exc.mrctl_line = index  # type: ignore[attr-defined]
        raise


def _mapped_kv(mapper: Mapper, flat: list[Any], skipped: _Skipped | None = None) -> Outs:
    """(pair's 0-based position, pairs of `map(key, value)`) for each pair of a flat
    [k1, v1, k2, v2, ...] list; given `skipped`, a pair whose `map` raises is skipped."""
    map_pair = mapper.map
    if skipped is not None:
        items = ((i // 2, (flat[i], flat[i + 1])) for i in range(0, len(flat), 2))
        yield from _skipping_bad(items, lambda kv, index: returned_pairs(map_pair(*kv), mapper), skipped)
        return
    index = 0
    try:
        for index in range(0, len(flat), 2):  # noqa: B007 - index is read in the handler
            out = map_pair(flat[index], flat[index + 1])
            yield index // 2, out if type(out) is GeneratorType else returned_pairs(out, mapper)
    except Exception as exc:
        exc.mrctl_line = index // 2  # type: ignore[attr-defined]
        raise


def _counting(records: ChunkRecords, counted: list[int]) -> Iterator[tuple[int, Any]]:
    """The chunk's (line, raw record) pairs, counted in `counted[0]` as they are read."""
    for item in records:
        counted[0] += 1
        yield item


def _skipping_bad(items: Iterable[tuple[int, Any]], map_one: Callable[[Any, int], Iterable[tuple[Any, Any]]],
                  skipped: _Skipped) -> Outs:
    """One `map` per (line, record), its pairs buffered so that a record that raises leaves none."""
    for index, record in items:
        try:
            pairs = list(map_one(record, index))
        except (TaskInterrupted, MemoryError, JobCodeError):  # not the record's fault
            raise
        except Exception as exc:
            skipped.add(index, exc)
            continue
        yield index, pairs


def _group(outs: Outs, mapper: Mapper) -> dict[Any, list[Any]]:
    """Values by key identity (codec.group_key), in emission order. The hot loop of every map
    task: kept inline, with str keys (their own identity) on the fast path; an item of the
    mapper's that is no pair fails at its unpacking, with a JobCodeError."""
    groups: dict[Any, list[Any]] = {}
    get = groups.get
    group_key = codec.group_key
    index = None
    try:
        for index, out in outs:  # noqa: B007 - index is read in the handler
            for key, value in out:
                if type(key) is not str:
                    key = group_key(key)
                found = get(key)
                if found is None:
                    groups[key] = [value]
                else:
                    found.append(value)
    except Exception as exc:
        if (blamed := _blamed(exc, index, mapper)) is exc:
            raise
        raise blamed from None
    return groups


def _blamed(exc: Exception, index: int | None, mapper: Mapper) -> Exception:
    """An exception met while a record's pairs were iterated, made to name where: an item
    that did not unpack as a pair (a TypeError or ValueError raised by the loop itself) as a
    JobCodeError; any other tagged with the record's index (unless it names its own line)."""
    if isinstance(exc, TypeError | ValueError) and _raised_here(exc):
        return not_a_pair(mapper, exc)
    if index is not None and not hasattr(exc, "mrctl_line"):
        exc.mrctl_line = index  # type: ignore[attr-defined]
    return exc


def _raised_here(exc: Exception) -> bool:
    """Whether the frame that caught `exc` raised it itself (an item that did not unpack as
    a pair), rather than the job's code under it (its traceback goes deeper)."""
    tb = exc.__traceback__
    return tb is not None and tb.tb_next is None


def _add(groups: dict[Any, list[Any]], key: Any, value: Any) -> None:
    """Add one pair (e.g. from teardown) to the groups; the key may be new."""
    groups.setdefault(codec.group_key(key), []).append(value)


def _combine(combiner: Reducer, groups: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
    combiner.setup()
    combined: dict[Any, list[Any]] = {}
    skip_single = not combiner.combines_every_key
    for ident, values in groups.items():
        if skip_single and len(values) == 1 and ident not in combined:  # nothing to combine: skip the call
            combined[ident] = values
            continue
        pairs = reduce_pairs(combiner, codec.key_of(ident), values)
        if type(pairs) is tuple:  # one value, of this key: its identity is known
            found = combined.get(ident)
            if found is None:
                combined[ident] = [pairs[0][1]]
            else:
                found.append(pairs[0][1])
            continue
        for k, v in pairs:
            _add(combined, k, v)
    for k, v in teardown_pairs(combiner):
        _add(combined, k, v)
    return combined


def _check_plain(key: Any, values: list[Any], who: str) -> None:
    """Refuse, at the task that emits it, a key or value that is not plain data."""
    for value in values:
        if type(value) not in codec.PLAIN_SCALARS and (why := codec.plain_error(value)):
            raise TypeError(f"{who} emitted {why} in the value {_short(value)} of key {_short(key)}: "
                            "keys and values must be plain data (str, int, float, bool, None, lists, dicts)")
    if type(key) not in codec.PLAIN_SCALARS and (why := codec.plain_error(key)):
        raise TypeError(f"{who} emitted {why} in the key {_short(key)}: keys and values must be "
                        "plain data (str, int, float, bool, None, lists, dicts)")


def key_excerpt(key: Any) -> str:
    """A key for an error message: its repr, cut to the first 200 characters (a key may be
    megabytes)."""
    return _short(key)


def _short(obj: Any, limit: int = 200) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def default_partition(key: Any, partitions: int) -> int:
    """Mapper.partition's default, without the method call: crc32 of the key's encoding."""
    return _partition_of(codec.group_key(key), partitions)


def _partition_of(ident: str | bytes, partitions: int) -> int:
    return zlib.crc32(ident.encode() if type(ident) is str else ident) % partitions


def merge_blobs(blobs: Iterable[bytes]) -> dict[Any, list[Any]]:
    """Group the pairs of several map blobs by key identity (codec.group_key), keeping the
    blobs' order for values."""
    groups: dict[Any, list[Any]] = {}
    group_key = codec.group_key
    for blob in blobs:
        flat = codec.unpack_blob(blob)
        for i in range(0, len(flat), 2):
            key = flat[i]
            if type(key) is not str:
                key = group_key(key)
            found = groups.get(key)
            if found is None:
                groups[key] = list(flat[i + 1])
            else:
                found.extend(flat[i + 1])
    return groups


def sorted_groups(groups: dict[Any, list[Any]]) -> Iterator[tuple[Any, list[Any]]]:
    """(key, values) of `groups` (by identity, as merge_blobs makes them) in codec.sort_key
    order of the keys; keys whose sort keys tie stay in the order they were first met."""
    keys = {ident: codec.key_of(ident) for ident in groups}
    # str keys (their own identity) sort as sort_key sorts them: skip a call per key
    order = sorted(groups) if all(type(i) is str for i in groups) else \
        sorted(groups, key=lambda ident: codec.sort_key(keys[ident]))
    return ((keys[ident], groups[ident]) for ident in order)


def run_reduce(reducer: Reducer, groups: dict[Any, list[Any]] | Iterable[tuple[Any, list[Any]]],
               sort_values: bool = False) -> ReduceResult:
    """Reduce every key in sorted key order (`groups`: by identity, as merge_blobs makes them, or
    (key, values) already in that order, as sorted_runs merges them); the output pairs come back
    sorted by key. With `sort_values`, each key's values arrive sorted (codec.value_sort_key),
    not in input order."""
    reducer.setup()
    pairs: list[tuple[Any, Any]] = []
    records_in = 0
    for key, values in sorted_groups(groups) if isinstance(groups, dict) else groups:
        if sort_values:
            values.sort(key=codec.value_sort_key)
        records_in += len(values)
        try:
            pairs.extend(reduce_pairs(reducer, key, values))
        except Exception as exc:
            exc.mrctl_key = key  # type: ignore[attr-defined]  # named in the failure
            raise
    pairs.extend(teardown_pairs(reducer))
    for key, value in pairs:
        _check_plain(key, [value], "the reducer")
    if all(type(key) is str for key, _ in pairs):
        pairs.sort(key=_first)  # stable, like the general sort: equal keys keep their order
    else:
        pairs.sort(key=lambda kv: codec.sort_key(kv[0]))
    return ReduceResult(pairs, records_in)


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def pack_pairs(pairs: list[tuple[Any, Any]]) -> bytes:
    return codec.pack_blob(list(itertools.chain.from_iterable(pairs)))


def unpack_pairs(blob: bytes) -> list[tuple[Any, Any]]:
    flat = codec.unpack_blob(blob)
    return list(zip(flat[0::2], flat[1::2], strict=True))
