"""The public job API: subclass `Mapper` and `Reducer` in a job module.

A job module is one Python file. Its classes are shipped to the workers as source text through
Redis, so a job may import only the standard library and packages installed in the worker image.

Keys and values are plain data: str, int, float, bool, None, and lists/tuples/dicts of those.
Job code knows its task: `self.task_id`, `self.attempt`, `self.params`, and in map tasks
`self.input_path` and `self.input_tag`, and in a multi-step job `self.step`, `self.step_name`,
`self.iteration`, `self.previous_counters` and `self.job_counters`, all set before `setup` runs
(TaskContext). A mapper of a step after the first is called as `map(self, key, value)` for
each pair the previous step output. It may count
things with `self.increment_counter(group, name, amount)`: an attempt's counts are added to the
job's counters when, and only when, that attempt commits (exactly once per task), and say
what it is doing with `self.set_status(message)` (an event of the run, as it happens).

Keys are type-exact: they group by their msgpack encoding (codec.group_key), so 1, 1.0, True
and "1" are four keys, and a list key groups (and arrives) as a tuple.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import GeneratorType, MappingProxyType
from typing import Any, TypeVar

from mrctl.errors import JobCodeError
from mrctl.io import codec

T = TypeVar("T")


@dataclass(frozen=True)
class StepPlace:
    """Where a task's step stands in a multi-step run (a one-step job: step 1 of 1)."""

    step: int = 1  # 1-based over the whole run, every iteration counted
    name: str = "job"
    iteration: int = 1  # 1-based, within the step's repeat group
    previous_counters: Mapping[tuple[str, str], int] = field(default_factory=dict)  # the step before
    job_counters: Mapping[tuple[str, str], int] = field(default_factory=dict)  # every step before


@dataclass(frozen=True)
class TaskContext:
    """What a task's code may know about where it runs; the same on every backend."""

    task_id: str  # "m:<i>" for map task i, "r:<r>" for reduce partition r
    attempt: int = 1  # 1 on the first try; a retry or a speculative backup gets the next
    params: Mapping[str, Any] = field(default_factory=dict)  # the job's params (spec, --param)
    input_path: str | None = None  # map tasks: the input file, as the user named it
    input_tag: str | None = None  # map tasks: that input's tag, if the spec gave one
    # the attempt's user counters, (group, name) -> total, shared by every object of the
    # attempt (mapper and combiner); committed with the attempt's output, or dropped with it
    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    step: StepPlace = field(default_factory=StepPlace)  # multi-step jobs: where this one is
    status: Callable[[str], None] | None = None  # where set_status goes: the run's events


class _TaskCode:
    """What Mapper and Reducer share: the task context, set before `setup` runs."""

    task_id: str | None = None
    attempt: int = 0
    params: Mapping[str, Any] = MappingProxyType({})
    input_path: str | None = None
    input_tag: str | None = None
    step: int = 1
    step_name: str = "job"
    iteration: int = 1
    previous_counters: Mapping[tuple[str, str], int] = MappingProxyType({})
    job_counters: Mapping[tuple[str, str], int] = MappingProxyType({})
    _mrctl_counters: dict[tuple[str, str], int] | None = None
    _mrctl_status: Callable[[str], None] | None = None

    def set_status(self, message: str) -> None:
        """Say what the task is doing (mrjob's name for it): a "status" event of the run, in
        the live view, the log and the history, as it happens (a failed attempt's too). Outside
        a run's workers (inline, a unit test) it is logged."""
        if self._mrctl_status is not None:
            self._mrctl_status(str(message)[:500])
        else:
            logging.getLogger("mrctl.job").info("%s status: %s", self.task_id, message)

    def increment_counter(self, group: str, name: str, amount: int = 1) -> None:
        """Add `amount` to the counter `name` of `group` (mrjob's name for it).

        Counts are kept with the attempt and reach the job's counters only if the attempt
        commits: a failed, lost or refused attempt's counts are dropped, so each task counts
        once, however often it ran. `group` may not contain ":"; `amount` is an int (it may be
        negative).
        """
        counters = self._mrctl_counters
        if counters is None:  # an object made outside a task (a unit test)
            counters = self._mrctl_counters = {}
        try:  # a counter counted before was checked then: jobs count once per record
            total = counters[group, name]
        except (KeyError, TypeError):
            _check_counter(group, name)
            total = 0
        if type(amount) is not int and (isinstance(amount, bool) or not isinstance(amount, int)):
            raise TypeError(f"counter amount must be an int, got {amount!r}")
        counters[group, name] = total + amount


def _check_counter(group: Any, name: Any) -> None:
    if not isinstance(group, str) or not group or ":" in group:
        raise ValueError(f"counter group must be a non-empty string without ':', got {group!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"counter name must be a non-empty string, got {name!r}")


def with_context(cls: type[T], context: TaskContext) -> T:
    """An instance of a job class, its task context set (a user's __init__ takes no arguments)."""
    obj = cls()
    obj.task_id, obj.attempt = context.task_id, context.attempt  # type: ignore[attr-defined]
    obj.params = MappingProxyType(dict(context.params))  # type: ignore[attr-defined]
    obj.input_path, obj.input_tag = context.input_path, context.input_tag  # type: ignore[attr-defined]
    obj._mrctl_counters = context.counters  # type: ignore[attr-defined]
    obj._mrctl_status = context.status  # type: ignore[attr-defined]
    place = context.step
    obj.step, obj.step_name, obj.iteration = place.step, place.name, place.iteration  # type: ignore[attr-defined]
    obj.previous_counters = MappingProxyType(dict(place.previous_counters))  # type: ignore[attr-defined]
    obj.job_counters = MappingProxyType(dict(place.job_counters))  # type: ignore[attr-defined]
    return obj


class Mapper(_TaskCode):
    """Turns input lines into (key, value) pairs.

    `setup` and `teardown` run once per map task (one chunk of input), like mrjob's
    `mapper_init` / `mapper_final`; `teardown` may yield extra pairs.
    """

    def setup(self) -> None:
        """Called once per task before the first line."""

    def map(self, line: str) -> Iterable[tuple[Any, Any]]:
        """Yield (key, value) pairs for one input line (without its line ending); in a step
        after the first, `map(self, key, value)` for one pair of the previous step's output."""
        raise NotImplementedError("a Mapper must define map(self, line)")

    def map_chunk(self, text: str) -> Iterable[tuple[Any, Any]]:
        """Yield the pairs of a whole chunk at once: `text` is whole lines joined by "\n".

        The default calls `map` once per line. Override it for speed when a job can work on
        the text as a whole (e.g. one regex over it); `map` stays the simple default.
        """
        mapper = self.map
        for line in split_lines(text):
            yield from mapper(line)

    def teardown(self) -> Iterable[tuple[Any, Any]] | None:
        """Called once per task after the last line; may yield final pairs."""
        return None

    def partition(self, key: Any, num_partitions: int) -> int:
        """Choose the reduce partition of `key`: a stable crc32 of its encoding, mod R
        (UTF-8 for a string, msgpack otherwise).

        Never Python's `hash()`, which is salted per process and would scatter a key's values
        over several reducers.
        """
        data = key.encode() if type(key) is str else codec.encode_key(key)
        return zlib.crc32(data) % num_partitions


class IdentityMapper(Mapper):
    """A later step's mapper when the spec names none: every pair passes through."""

    def map(self, key: Any, value: Any) -> Iterable[tuple[Any, Any]]:  # type: ignore[override]
        yield key, value


class Reducer(_TaskCode):
    """Turns each key and all of its values into output pairs.

    `reduce` may yield (key, value) pairs, or return a single value, which is emitted as
    (key, value). Values arrive in input order (map task order, then the order they were
    emitted). A Reducer used as a combiner may run zero or more times per key, as in Hadoop
    (it is skipped where a map task has a single value for a key), so it must not change the
    result: associative and commutative in effect, like a sum.
    """

    # as a combiner, called for every key of its map task, even one with a single value (an
    # mrjob combiner: mrjob's runners call it so, and it may change a value's form)
    combines_every_key: bool = False

    def setup(self) -> None:
        """Called once per task before the first key."""

    def reduce(self, key: Any, values: list[Any]) -> Iterable[tuple[Any, Any]] | Any:
        raise NotImplementedError("a Reducer must define reduce(self, key, values)")

    def teardown(self) -> Iterable[tuple[Any, Any]] | None:
        """Called once per task after the last key; may yield final pairs."""
        return None


def split_lines(text: str) -> list[str]:
    """The lines of a chunk's text, without their "\n" (a final empty line is not a line)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def reduce_pairs(reducer: Reducer, key: Any, values: list[Any]) -> Iterable[tuple[Any, Any]]:
    """Normalise a `reduce` call (made now): a generator yields pairs (checked as they come),
    any other return value is one value, of `key`. Called once per key, so the common case, one
    value, costs a tuple, not a generator."""
    result = reducer.reduce(key, values)
    if isinstance(result, Iterator):
        return (_as_pair(pair, reducer, "reduce") for pair in result)
    return ((key, result),)


def teardown_pairs(task_object: Mapper | Reducer) -> Iterator[tuple[Any, Any]]:
    """The pairs a `teardown` yields, if any."""
    result = task_object.teardown()
    if result is not None:
        for pair in result:
            yield _as_pair(pair, task_object, "teardown")


def _as_pair(pair: Any, owner: object, method: str) -> tuple[Any, Any]:
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise JobCodeError(_broken(owner, method, f"yielded {_described(pair)}"))
    return pair[0], pair[1]


# What a map method may return without a look at each item: a generator (its body yields, the
# usual case, checked where its pairs are grouped) and a dict's items (pairs by construction)
_PAIR_STREAMS = (GeneratorType, type({}.items()))

_EXPECTED = {"reduce": "must yield (key, value) pairs or return one value",
             "teardown": "may yield (key, value) pairs only"}


def returned_pairs(out: Any, mapper: Mapper, method: str = "map") -> Iterable[tuple[Any, Any]]:
    """The pairs of one call of a map method, refused where they cannot be pairs.

    `return word, 1` where `yield word, 1` was meant, a list of words, None: each fails the
    task with a JobCodeError naming the method, its file and line, instead of a confusing
    unpacking error in mrctl's code later, or (a two-character key) silently wrong pairs.
    A returned list or tuple of pairs, or any other iterable of them, is fine.
    """
    if type(out) in _PAIR_STREAMS:
        return out
    if out is None or isinstance(out, str | bytes | dict) or not isinstance(out, Iterable):
        raise JobCodeError(_broken(mapper, method, f"returned {_described(out)}"))
    return _checked_pairs(out, mapper, method)


def _checked_pairs(out: Iterable[Any], mapper: Mapper, method: str) -> Iterator[tuple[Any, Any]]:
    for item in out:
        if type(item) not in (tuple, list) or len(item) != 2:
            raise JobCodeError(_broken(mapper, method, f"returned {_described(out)}, whose item "
                                                       f"{_short(item)} is not a (key, value) pair"))
        yield item


def not_a_pair(mapper: Mapper, error: Exception) -> JobCodeError:
    """The error for a map generator's item that did not unpack as (key, value)."""
    method = "map_chunk" if type(mapper).map_chunk is not Mapper.map_chunk else "map"
    return JobCodeError(_broken(mapper, method, f"yielded something else ({error})"))


def code_place(owner: object, method: str) -> str:
    """`WordMapper.map in /jobs/wc.py:12`: the class and method as defined, and its def's line."""
    func = getattr(type(owner), method, None)
    code = getattr(func, "__code__", None)
    if code is None:
        return f"{type(owner).__name__}.{method}"
    name = func.__qualname__.rsplit(".<locals>.", 1)[-1]  # a class made inside a function
    return f"{name} in {code.co_filename}:{code.co_firstlineno}"


def _broken(owner: object, method: str, what: str) -> str:
    expected = _EXPECTED.get(method, "must yield (key, value) pairs")
    return f"{method}() {expected}; {code_place(owner, method)} {what}"


def _described(value: Any) -> str:
    """`a tuple ('word', 1)`, `None`: a value's type and its start, for an error message."""
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name} {_short(value)}"


def _short(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
