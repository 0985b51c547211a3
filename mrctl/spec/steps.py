"""Multi-step and iterative jobs: the `steps:` of a spec, and the order they run in.

    module: pagerank.py               # the module steps use unless one names its own
    steps:
      - name: graph                   # optional (default step<k>)
        mapper: ParseAdjacency        # optional after the first step: pairs pass through
        reducer: BuildNode            # optional: without one the step is map-only
        combiner: ...                 # optional
        reducers: 4                   # optional (default: the spec's reducers)
        sort_values: false            # optional (default: the spec's sort_values)
        params: {...}                 # optional: over the job's params, for this step only
      - repeat: {param: iterations}   # or repeat: 10; a group of steps run again and again
        until: {counter: [pagerank, changed], below: 1}   # stop once an iteration counts less
        steps:
          - {name: iterate, mapper: SpreadRank, reducer: SumRank}

A step, or a group of steps, with `repeat`/`until` is Hadoop's iterative driver, declared: the
whole run stays on one cluster, and each step reads the previous step's output pairs where
they are (in Redis), as `map(self, key, value)`. Only the last step writes the output file.
`until` is read after each iteration on that iteration's counters (summed over the group's
steps); the repeat count is the most iterations that run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrctl.errors import SpecError

STEP_KEYS = ("name", "module", "mapper", "reducer", "combiner", "reducers", "sort_values", "params",
             "repeat", "until", "mapper_cmd", "reducer_cmd", "combiner_cmd")
GROUP_KEYS = ("name", "steps", "repeat", "until")
MAX_REPEAT = 10_000

Counters = Mapping[tuple[str, str], int]


@dataclass(frozen=True)
class StepSpec:
    """One MapReduce step. `mapper` None: the identity (a later step's pairs pass through);
    `reducer` None: a map-only step (its pairs pass on in input order)."""

    name: str
    module: Path
    mapper: str | None
    reducer: str | None
    combiner: str | None = None
    reducers: int = 4  # 0 for a map-only step
    sort_values: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # this step's own, over the job's


@dataclass(frozen=True)
class Until:
    """Stop iterating once the iteration's counter `group`/`name` is below `below`."""

    group: str
    name: str
    below: float

    def met(self, counters: Counters) -> bool:
        return counters.get((self.group, self.name), 0) < self.below


@dataclass(frozen=True)
class StepGroup:
    """Steps run in order `repeat` times (at most: `until` may stop them sooner). The repeat
    count may name a param (`repeat: {param: iterations}`), resolved against the job's params."""

    steps: tuple[StepSpec, ...]
    repeat: int | str = 1
    until: Until | None = None

    def times(self, params: Mapping[str, Any]) -> int:
        if isinstance(self.repeat, int):
            return self.repeat
        value = params.get(self.repeat)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REPEAT:
            raise SpecError(f"repeat: the param {self.repeat!r} must be an integer from 1 to "
                            f"{MAX_REPEAT} (the number of iterations), got {value!r}")
        return value


@dataclass(frozen=True)
class RunStep:
    """A step as it runs: its place in the run (every iteration counts), and its spec."""

    number: int  # 1-based, over the whole run
    planned: int  # how many steps the run has if no `until` stops it early
    spec: StepSpec
    iteration: int = 1  # 1-based, within its group
    iterations: int = 1  # the group's repeat count

    @property
    def first(self) -> bool:
        return self.number == 1

    def label(self) -> str:
        return step_label(self.number, self.planned, self.spec.name, self.iteration, self.iterations)


def step_label(number: int, planned: int, name: str, iteration: int = 1, iterations: int = 1) -> str:
    """e.g. "step 3/11 (iterate, iteration 2/10)"."""
    turn = f", iteration {iteration}/{iterations}" if iterations > 1 else ""
    return f"step {number}/{planned} ({name}{turn})"


def unroll(program: tuple[StepGroup, ...], params: Mapping[str, Any],
           last_counters: Callable[[int], Counters]) -> Iterator[RunStep]:
    """The steps of a run in order. After each iteration of a group with `until`, it asks
    `last_counters(n)` for the counters of the last n steps run (summed) to decide whether to
    go on."""
    counts = [group.times(params) for group in program]
    planned = sum(n * len(g.steps) for n, g in zip(counts, program, strict=True))
    number = 0
    for group, times in zip(program, counts, strict=True):
        for iteration in range(1, times + 1):
            for step in group.steps:
                number += 1
                yield RunStep(number, planned, step, iteration, times)
            if group.until is not None and group.until.met(last_counters(len(group.steps))):
                break


def describe(program: tuple[StepGroup, ...], params: Mapping[str, Any]) -> list[str]:
    """One line per step for `mrctl validate`, e.g.
    `step 2 iterate: SpreadRank -> SumRank, 4 reducers; repeat 10 (param iterations), until pagerank.changed < 1`."""
    lines, number = [], 0
    for group in program:
        times = group.times(params)
        for step in group.steps:
            number += 1
            roles = f"{step.mapper or '(identity)'} -> {step.reducer or '(map-only)'}"
            roles += f", combiner {step.combiner}" if step.combiner else ""
            lines.append(f"step {number} {step.name}: {roles}, {step.reducers} reducers")
        if times > 1 or group.until:
            source = f" (param {group.repeat})" if isinstance(group.repeat, str) else ""
            until = f", until {group.until.group}.{group.until.name} < {group.until.below:g}" if group.until else ""
            lines[-1] += f"; {'these steps ' if len(group.steps) > 1 else ''}repeat {times}{source}{until}"
    return lines


# -- parsing (spec.py hands each entry of `steps:` here) ---------------------------------


@dataclass
class StepParser:
    """Turns the `steps:` list into StepGroups. `check_step(where, entry, number)` (spec.py;
    number is 1-based in the spec) validates a step's classes and settings and returns its
    StepSpec; `error(key, message)`
    makes a SpecError with the key's line."""

    check_step: Callable[[str, dict[str, Any], int], StepSpec]
    error: Callable[[str, str], SpecError]

    def parse(self, value: Any) -> tuple[StepGroup, ...]:
        if not isinstance(value, list) or not value:
            raise self.error("steps", "expected a non-empty list of steps (each a mapping with "
                             "mapper, reducer, ...)")
        groups: list[StepGroup] = []
        count = 0
        for i, entry in enumerate(value):
            where = f"steps[{i}]"
            if not isinstance(entry, dict):
                raise self.error(where, f"expected a mapping, got {entry!r}")
            if "steps" in entry:
                inner = entry["steps"]
                self._check_keys(where, entry, GROUP_KEYS)
                if not isinstance(inner, list) or not inner or not all(isinstance(s, dict) for s in inner):
                    raise self.error(f"{where}.steps", "expected a non-empty list of steps")
                if any("steps" in s or "repeat" in s or "until" in s for s in inner):
                    raise self.error(f"{where}.steps", "a repeated group holds plain steps (no nested steps, "
                                     "repeat or until)")
                steps = tuple(self.check_step(f"{where}.steps[{j}]", s, count + j + 1)
                              for j, s in enumerate(inner))
            else:
                self._check_keys(where, entry, STEP_KEYS)
                steps = (self.check_step(where, entry, count + 1),)
            group = StepGroup(steps, self._repeat(where, entry), self._until(where, entry))
            if count == 0 and (group.repeat != 1 or group.until):
                raise self.error(where, "the first step reads the input and cannot repeat; give it "
                                 "on its own and repeat the steps after it")
            count += len(steps)
            groups.append(group)
        return tuple(groups)

    def _check_keys(self, where: str, entry: dict, allowed: tuple[str, ...]) -> None:
        for key in entry:
            if key not in allowed:
                raise self.error(f"{where}.{key}", f"unknown key; expected one of {', '.join(allowed)}")

    def _repeat(self, where: str, entry: dict) -> int | str:
        value = entry.get("repeat", 1)
        if isinstance(value, dict) and list(value) == ["param"] and isinstance(value["param"], str):
            return value["param"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REPEAT:
            raise self.error(f"{where}.repeat", f"expected an integer from 1 to {MAX_REPEAT} or "
                             f"{{param: NAME}}, got {value!r}")
        return value

    def _until(self, where: str, entry: dict) -> Until | None:
        value = entry.get("until")
        if value is None:
            return None
        counter = value.get("counter") if isinstance(value, dict) else None
        below = value.get("below") if isinstance(value, dict) else None
        if (not isinstance(value, dict) or set(value) != {"counter", "below"}
                or not isinstance(counter, list) or len(counter) != 2
                or not all(isinstance(c, str) and c for c in counter)
                or isinstance(below, bool) or not isinstance(below, int | float)):
            raise self.error(f"{where}.until", f"expected {{counter: [GROUP, NAME], below: NUMBER}}, "
                             f"got {value!r}")
        return Until(counter[0], counter[1], below)
