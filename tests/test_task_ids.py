"""Task ids and attempt refs: a wire protocol between master and workers, so their exact strings
are pinned here as literals (mrctl.io.task_ids builds and parses them; mrctl.broker.lua's
scripts read and build the same strings inside Redis)."""

from __future__ import annotations

import pytest

from mrctl.broker import lua
from mrctl.broker.meta import JobMeta
from mrctl.io.task_ids import (
    KINDS,
    MAP,
    REDUCE,
    attempt_ref,
    is_map,
    is_reduce,
    map_tid,
    parse_attempt_ref,
    parse_tid,
    reduce_tid,
    task_id,
    tid_index,
    tid_kind,
)


def test_the_exact_strings():
    # change these knowingly: workers of another version, Redis's Lua and past histories read them
    assert (MAP, REDUCE, KINDS) == ("m", "r", ("m", "r"))
    assert map_tid(0) == "m:0" and map_tid(3) == "m:3" and map_tid(12345) == "m:12345"
    assert reduce_tid(0) == "r:0" and reduce_tid(1) == "r:1" and reduce_tid(40) == "r:40"
    assert task_id("m", 7) == "m:7" and task_id("r", 7) == "r:7"
    assert attempt_ref("m:3", 2) == "m:3@2" and attempt_ref("r:10", 1) == "r:10@1"


@pytest.mark.parametrize(("tid", "kind", "index"), [
    ("m:0", "m", 0), ("m:3", "m", 3), ("r:1", "r", 1), ("r:40", "r", 40), ("m:1000000", "m", 1000000),
])
def test_parse_tid(tid, kind, index):
    assert parse_tid(tid) == (kind, index)
    assert (tid_kind(tid), tid_index(tid)) == (kind, index)
    assert task_id(kind, index) == tid  # the round trip, both ways
    assert (map_tid if kind == "m" else reduce_tid)(index) == tid


@pytest.mark.parametrize(("ref", "tid", "attempt"), [
    ("m:3@2", "m:3", 2), ("r:0@1", "r:0", 1), ("m:12@10", "m:12", 10),
])
def test_parse_attempt_ref(ref, tid, attempt):
    assert parse_attempt_ref(ref) == (tid, attempt)
    assert attempt_ref(tid, attempt) == ref


def test_is_map_and_is_reduce_read_the_prefix_and_never_raise():
    assert is_map("m:3") and not is_reduce("m:3")
    assert is_reduce("r:1") and not is_map("r:1")
    for other in ("?", "", "x:1", "M:1", "mr:1"):  # e.g. a failed job's missing failed_task: "?"
        assert not is_map(other) and not is_reduce(other)


@pytest.mark.parametrize("bad", ["", "m", "m:", "m:x", "m:-1", "m:+1", "m:03", "m: 3", "m:3 ", " m:3", "m:1.0",
                                 "x:1", "M:1", "map:1", "m:3@2", "m3", "m::3", "m:٣", b"m:3", None, 3])
def test_bad_task_ids_are_refused_and_shown(bad):
    with pytest.raises(ValueError, match="not a task id: .*'m:<index>' or 'r:<index>'"):
        parse_tid(bad)
    with pytest.raises(ValueError, match=r"not a task id"):
        attempt_ref(bad, 1)


@pytest.mark.parametrize("bad", ["", "m:3", "m:3@", "@2", "m:3@x", "m:3@-1", "m:3@02", "m:3@2@2", "m:3 @2",
                                 "x:3@2", "m:03@2", "m:3@2 ", b"m:3@2", None])
def test_bad_attempt_refs_are_refused_and_shown(bad):
    with pytest.raises(ValueError, match=r"not an attempt ref: .*'<task id>@<attempt>'"):
        parse_attempt_ref(bad)


@pytest.mark.parametrize("index", [-1, 1.0, "3", True, None])
def test_an_index_or_attempt_is_an_int_of_zero_or_more(index):
    with pytest.raises(ValueError, match="must be an int >= 0"):
        map_tid(index)
    with pytest.raises(ValueError, match="must be an int >= 0"):
        reduce_tid(index)
    with pytest.raises(ValueError, match="must be an int >= 0"):
        attempt_ref("m:3", index)


def test_a_kind_is_m_or_r():
    for kind in ("map", "x", "", "M"):
        with pytest.raises(ValueError, match="a task's kind is 'm' \\(map\\) or 'r' \\(reduce\\)"):
            task_id(kind, 1)


def test_the_lua_scripts_read_and_build_the_same_format():
    # the other place the format lives (named in mrctl.io.task_ids' docstring): the two change together
    assert "string.sub(tid, 1, 2) == 'm:'" in lua.CLAIM  # the kind: the first two characters
    assert "tonumber(string.sub(tid, 3))" in lua.COMMIT  # the index: the rest (the done bytes)
    assert "string.sub(tid, 3)" in lua.CLAIM  # a reduce task's partition
    for script in (lua.CLAIM, lua.COMMIT, lua.FAIL, lua.REAP, lua.BEAT):
        assert "'@'" in script  # an attempt ref built: tid .. '@' .. attempt
    for script in (lua.CLAIM, lua.REAP):
        assert "'^(.*)@(%d+)$'" in script  # and parsed


def test_redis_holds_the_attempt_refs_that_python_reads(broker):
    """A claim's lease and deadline members, built in Lua, are the attempt refs Python builds and
    parses; a heartbeat's held refs, built in Python, renew them."""
    from mrctl.broker import keys

    broker.publish_job("J", JobMeta(state="running", max_attempts=2), {"job.py": ""})
    broker.add_map_tasks("J", [(map_tid(i), {"kind": "map", "index": i}, b"x\n") for i in range(2)])
    broker.add_reduce_tasks("J", [0])
    claims = [broker.claim_task("J", "w1", lease_s=10, timeout_s=60) for _ in range(3)]
    assert [(c.tid, c.attempt) for c in claims] == [("m:0", 1), ("m:1", 1), ("r:0", 1)]
    for key in (keys.leases("J"), keys.deadlines("J")):
        members = sorted(m.decode() for m in broker.r.zrange(key, 0, -1))
        assert members == ["m:0@1", "m:1@1", "r:0@1"]
        assert sorted(parse_attempt_ref(m) for m in members) == [("m:0", 1), ("m:1", 1), ("r:0", 1)]
    assert sorted(broker.running("J")) == ["m:0", "m:1", "r:0"]
    before = broker.r.zscore(keys.leases("J"), "m:1@1")
    assert broker.heartbeat("w1", {}, "J", "m:0", 1, lease_s=100, held=[attempt_ref("m:1", 1)]) == "live"
    assert broker.r.zscore(keys.leases("J"), "m:1@1") > before  # the held ref named the member
    assert broker.commit_reduce("J", 0, 1, "w1", b"", {})
    assert broker.committed_attempts("J", ["m:0", "r:0"]) == {"m:0": 0, "r:0": 1}
