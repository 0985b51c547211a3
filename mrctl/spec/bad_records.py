"""The bad-record policy: what happens when a job's `map` raises on one record.

    bad_records: {policy: skip, max: 10}   # skip (and count) records whose map raises;
                                           # the job fails once more than 10 were skipped

`policy: fail` (the default) keeps the rule of every other exception: the attempt fails and is
retried, up to max_attempts. Under `skip`, the record's pairs are dropped, the record is
counted (stats `bad_records`) and the first few are kept with their file, line and exception,
for the summary. Only records given to `map` one at a time can be skipped: a mapper that
overrides `map_chunk` sees the whole chunk at once, so an exception there fails the attempt.
Skipped records are counted like the job's counters: once per committed attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mrctl.errors import SpecError

POLICIES = ("fail", "skip")
KEYS = ("policy", "max")
SAMPLES_KEPT = 5  # bad records kept with their file, line and error, per attempt and per job


@dataclass(frozen=True)
class BadRecordPolicy:
    policy: str = "fail"  # fail | skip
    max: int | None = None  # skip: the job fails once more than this many were skipped; None: no limit

    @property
    def skip(self) -> bool:
        return self.policy == "skip"

    def exceeded(self, skipped: int) -> bool:
        """Whether `skipped` records are more than this policy allows."""
        return self.skip and self.max is not None and skipped > self.max


@dataclass(frozen=True)
class SkippedRecord:
    """One skipped record, as the summary shows it."""

    file: str
    line: int  # 1-based, in the file
    error: str  # `Type: message`, bounded (errors.bounded_message)


def parse_bad_records(value: Any) -> BadRecordPolicy:
    """The spec's `bad_records:` mapping (or just a policy name); SpecError naming the sub-key."""
    if value is None:
        return BadRecordPolicy()
    if isinstance(value, str):
        value = {"policy": value}
    if not isinstance(value, dict):
        raise SpecError(f"expected a mapping {{policy: skip, max: N}} or a policy name, got {value!r}")
    unknown = [k for k in value if k not in KEYS]
    if unknown:
        raise SpecError(f"{unknown[0]}: unknown key; expected one of {', '.join(KEYS)}")
    policy = value.get("policy", "skip" if "max" in value else "fail")
    if policy not in POLICIES:
        raise SpecError(f"policy: expected one of {', '.join(POLICIES)}, got {policy!r}")
    limit = value.get("max")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise SpecError(f"max: expected an integer >= 0 (records that may be skipped), got {limit!r}")
    if limit is not None and policy != "skip":
        raise SpecError("max: only meaningful with policy: skip")
    return BadRecordPolicy(policy, limit)


def exceeded_message(policy: BadRecordPolicy, skipped: int, samples: tuple[SkippedRecord, ...]) -> str:
    """Why the job failed: more records skipped than `max` allows, with the first few."""
    lines = [f"bad records: {skipped} records skipped, more than bad_records.max {policy.max} "
             "(records whose map raised)"]
    lines += [f"  {s.file}, line {s.line}: {s.error}" for s in samples]
    return "\n".join(lines)
