"""Every task id mrctl builds or reads, and nothing else builds or parses one. These strings are
a wire protocol between the master and the workers (they name Redis keys, fill lists, sets and
hashes, and go into the run's history): their bytes never change (pinned in
tests/test_task_ids.py).

The other place the format lives is the Lua of mrctl/broker/lua.py, which reads and builds these
same strings inside Redis: CLAIM and _DONE take a task's kind from its first two characters
(`string.sub(tid, 1, 2) == 'm:'`) and its index from the rest (`string.sub(tid, 3)`); CLAIM,
COMMIT, _END_ALL, _FAIL_ATTEMPT and BEAT build attempt refs (`tid .. '@' .. attempt`), and
CLAIM and REAP parse them (`'^(.*)@(%d+)$'`). A change here changes there too, together.

Why mrctl.io, a package of bytes in and out: the users of task ids run from the top down to
mrctl.observe (an Attempt's phase) and mrctl.mrjob (a task's number in mrjob's jobconf), and a
package imports only those below it (pyproject.toml's layers); mrctl.io is the lowest package
below them all whose concern this is (the bytes that travel), and it imports nothing of mrctl.
"""

# Layout (<i>, <r> and <attempt> are decimal integers, no sign, no leading zeros):
#
# m:<i>              the id of map task i (0-based: input order in a first step, output i of
#                    the step before in a later one); a batch of tiny map tasks is just several
#                    of them, each its own id and attempt
# r:<r>              the id of reduce task r, which reduces partition r (0-based)
# m | r              a task's kind: the letter before the ':' (keys.done(job, kind) holds the
#                    committed attempts of one kind; a later step's `source` field names an
#                    output of the step before by its task's id, "output r:<r> of <label>")
# <tid>@<attempt>    an attempt ref, one attempt of a task (attempts count from 1, each claim
#                    the next: a retry or a speculative backup gets a new one): the members of
#                    the leases and deadlines sorted sets, a worker's claim memo
#                    ("<request id> <ref> <ref> ..."), the held attempts a heartbeat renews,
#                    and the workers' logs
#
# Not task ids, though they look alike: a step's job id "<run>.s<n>" (mrctl.broker.keys.step_job),
# and a task hash's per-attempt fields "live:<attempt>" and "cancelled:<attempt>" (mrctl.broker.keys).

from __future__ import annotations

import re

MAP = "m"  # the kind of a map task's id
REDUCE = "r"  # the kind of a reduce task's id
KINDS = (MAP, REDUCE)

_SEP = ":"  # between a task's kind and its index
_AT = "@"  # between a task's id and an attempt's number
_INT = "(?:0|[1-9][0-9]*)"
_TID = re.compile(f"([{MAP}{REDUCE}]){_SEP}({_INT})")
_REF = re.compile(f"([{MAP}{REDUCE}]{_SEP}{_INT}){_AT}({_INT})")


def _checked(what: str, n: int) -> int:
    if type(n) is not int or n < 0:  # a bool is no index: f"m:{True}" would be "m:True"
        raise ValueError(f"{what} must be an int >= 0, not {n!r}")
    return n


def task_id(kind: str, index: int) -> str:
    """The id of task `index` of `kind` (MAP or REDUCE): "m:3", "r:1"."""
    if kind not in KINDS:
        raise ValueError(f"a task's kind is {MAP!r} (map) or {REDUCE!r} (reduce), not {kind!r}")
    return f"{kind}{_SEP}{_checked('a task index', index)}"


def map_tid(i: int) -> str:
    """The id of map task i: "m:<i>", e.g. map_tid(3) == "m:3"."""
    return task_id(MAP, i)


def reduce_tid(r: int) -> str:
    """The id of reduce task r (partition r): "r:<r>", e.g. reduce_tid(1) == "r:1"."""
    return task_id(REDUCE, r)


def parse_tid(tid: str) -> tuple[str, int]:
    """(kind, index) of a task id: parse_tid("m:3") == ("m", 3). Anything that map_tid or
    reduce_tid did not build (an empty string, "m:", "m:03", "x:1", "m:3@2") is refused with a
    ValueError that shows it."""
    found = _TID.fullmatch(tid) if isinstance(tid, str) else None
    if found is None:
        raise ValueError(f"not a task id: {tid!r} (a task id is 'm:<index>' or 'r:<index>')")
    return found[1], int(found[2])


def tid_kind(tid: str) -> str:
    """The kind of a task id, MAP or REDUCE: tid_kind("r:1") == "r" (parse_tid's checks)."""
    return parse_tid(tid)[0]


def tid_index(tid: str) -> int:
    """The index of a task id: tid_index("m:3") == 3 (parse_tid's checks)."""
    return parse_tid(tid)[1]


def is_map(tid: str) -> bool:
    """Whether `tid` is a map task's id ("m:..."). Reads the prefix only, as the Lua scripts do,
    and never raises: "r:1", "?" and "" are not map ids. Use parse_tid to check a whole id."""
    return tid.startswith(MAP + _SEP)


def is_reduce(tid: str) -> bool:
    """Whether `tid` is a reduce task's id ("r:..."); is_map's rules."""
    return tid.startswith(REDUCE + _SEP)


def attempt_ref(tid: str, attempt: int) -> str:
    """One attempt of a task: "<tid>@<attempt>", e.g. attempt_ref("m:3", 2) == "m:3@2"."""
    parse_tid(tid)
    return f"{tid}{_AT}{_checked('an attempt', attempt)}"


def parse_attempt_ref(ref: str) -> tuple[str, int]:
    """(tid, attempt) of an attempt ref: parse_attempt_ref("m:3@2") == ("m:3", 2). Anything
    that attempt_ref did not build is refused with a ValueError that shows it."""
    found = _REF.fullmatch(ref) if isinstance(ref, str) else None
    if found is None:
        raise ValueError(f"not an attempt ref: {ref!r} (an attempt ref is '<task id>@<attempt>', "
                         "e.g. 'm:3@2')")
    return found[1], int(found[2])
