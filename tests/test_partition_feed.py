"""A partition too large for Redis at once: the master feeds it to each live attempt of its
reduce task a window at a time (mrctl.master.partition_feed), and a worker turns what it is fed
into sorted runs on its disk (mrctl.worker.sorted_runs). Real Redis; expected results come from
plain Python."""

from __future__ import annotations

import collections
import os
import random

from mrctl.broker import keys
from mrctl.io import codec
from mrctl.master.partition_feed import PartitionFeeds
from mrctl.master.spill_store import SpillStore
from mrctl.worker import tasks
from mrctl.worker.sorted_runs import SortedRuns

JOB = "J"


def _live(broker, *attempts: int, r: int = 0) -> None:
    """Attempts `attempts` of reduce task r:<r> are the live ones (the deadlines set says so)."""
    broker.r.delete(keys.deadlines(JOB))
    for attempt in attempts:
        broker.r.zadd(keys.deadlines(JOB), {f"r:{r}@{attempt}": 1})


def _items(broker, attempt: int) -> list[tuple[int, bytes]]:
    """(seq, blob) of what attempt's feed of partition 0 holds."""
    return [(int(seq), blob) for seq, _, blob in
            (item.partition(b"\n") for item in broker.r.lrange(keys.feed(JOB, 0, attempt), 0, -1))]


def test_each_live_attempt_is_fed_in_map_order_within_the_budget_and_a_new_one_from_the_start(broker):
    blobs = {i: os.urandom(1000 + i) for i in range(10)}  # incompressible: sizes as written
    store = SpillStore(JOB)
    store.add_partition(JOB, 0, {i: blobs[i] for i in (7, 3, 9, 0)})  # spilled out of order, twice
    store.add_partition(JOB, 0, {i: blobs[i] for i in (1, 2, 4, 5, 6, 8)})
    feeds = PartitionFeeds(broker, store, JOB)
    try:
        feeds.add(0)
        _live(broker, 1)
        feeds.tick(budget=3100)  # room for three blobs of ~1 KB
        assert _items(broker, 1) == [(0, blobs[0]), (1, blobs[1]), (2, blobs[2])]
        assert feeds.in_flight() == 1000 + 1001 + 1002
        # the worker has 0 and 1, and asks for 2: that acknowledges 0 and 1, which leave Redis
        assert [broker.fed_blob(JOB, 0, 1, seq, timeout=0.1) for seq in (0, 1, 2)] == [blobs[0], blobs[1], blobs[2]]
        feeds.tick(budget=3100)  # 2 is still held (its worker may ask again): two more fit
        assert _items(broker, 1) == [(2, blobs[2]), (3, blobs[3]), (4, blobs[4])]
        feeds.tick(budget=10)  # over budget: nothing more while the feed holds some
        assert len(_items(broker, 1)) == 3
        assert [broker.fed_blob(JOB, 0, 1, seq, timeout=0.1) for seq in (3, 4)] == [blobs[3], blobs[4]]
        assert broker.fed_blob(JOB, 0, 1, 5, timeout=0.1) is None  # not there yet: it waited
        feeds.tick(budget=10)  # a budget too small for any blob: one at least when Redis holds none
        assert _items(broker, 1) == [(5, blobs[5])]
        # attempt 1 is lost (its lease ran out), attempt 2 runs: 1's feed goes, 2's starts at map 0
        _live(broker, 2)
        feeds.tick(budget=10 ** 6)
        assert not broker.r.exists(keys.feed(JOB, 0, 1)) and not broker.r.hexists(keys.fed(JOB), "0:1")
        assert _items(broker, 2) == [(i, blobs[i]) for i in range(10)] + [(10, b"")]
        # committed by attempt 2: the feeds and the spill file go
        broker.r.setrange(keys.done(JOB, "r"), 0, (2).to_bytes(4, "big"))
        _live(broker)
        feeds.tick(budget=10 ** 6)
        assert not broker.r.exists(keys.feed(JOB, 0, 2)) and not broker.r.exists(keys.fed(JOB))
        assert store.partition_bytes(JOB, 0) == 0
        assert [p.name for p in store._dir.iterdir()] == ["owner.json"]  # the file went
    finally:
        store.close()


def test_a_backup_attempt_gets_a_feed_of_its_own(broker):
    store = SpillStore(JOB)
    store.add_partition(JOB, 0, {0: b"a", 1: b"bb"})
    feeds = PartitionFeeds(broker, store, JOB)
    try:
        feeds.add(0)
        _live(broker, 1, 2)
        feeds.tick(budget=100)
        for attempt in (1, 2):
            assert _items(broker, attempt) == [(0, b"a"), (1, b"bb"), (2, b"")]
    finally:
        store.close()


def test_feeds_and_restored_partitions_share_one_budget(broker):
    """What is restored whole and what is fed are both in Redis: together within the budget;
    a feed past it gets one blob only when Redis holds nothing else to come back, and what
    has committed stops counting."""
    from mrctl.master.spill import RESTORE_BUDGET, Spiller

    limit = 100_000
    budget = int(RESTORE_BUDGET * limit)
    spiller = Spiller(broker)
    spiller.begin_step(JOB, 4, limit)
    for r in (0, 1):  # fed: each map output just under the budget
        spiller.store.add_partition(JOB, r, {i: os.urandom(budget - 100) for i in range(2)})
    spiller.store.add_partition(JOB, 2, {0: os.urandom(15_000)})  # restored whole
    spiller.store.add_partition(JOB, 3, {0: os.urandom(15_000)})
    try:
        broker.r.zadd(keys.deadlines(JOB), {"r:0@1": 1, "r:1@1": 1})
        spiller.queue_reduces()  # the barrier
        assert spiller._next == 3  # 0 and 1 fed, 2 restored; 3 waits for room
        assert spiller.feeds.in_flight() == 0  # the restored one fills the budget already
        broker.r.setrange(keys.done(JOB, "r"), 8, (1).to_bytes(4, "big"))  # r:2 committed
        spiller.queue_reduces()
        assert spiller._next == 4 and spiller.feeds.in_flight() == 0  # r:3 restored in its place
        broker.r.setrange(keys.done(JOB, "r"), 12, (1).to_bytes(4, "big"))  # r:3 committed
        spiller.queue_reduces()
        assert spiller.feeds.in_flight() == budget - 100  # one blob, of one feed: nothing else is in Redis
    finally:
        spiller.store.close()


def test_the_worker_takes_its_feed_until_the_end_and_wakes_the_master(broker):
    broker.r.rpush(keys.feed(JOB, 0, 1), b"0\nx", b"1\n")
    assert broker.fed_blob(JOB, 0, 1, 0, timeout=0.1) == b"x"
    assert broker.fed_blob(JOB, 0, 1, 1, timeout=0.1) == b""
    assert broker.r.llen(keys.progress(JOB)) >= 1


def test_a_take_whose_reply_is_lost_gets_the_same_blob_again_and_loses_none(broker, lossy):
    via, proxy, shas = lossy
    broker.feed_blobs(JOB, 0, 1, 0, [b"a", b"b", b"c", b""])
    got = [via.fed_blob(JOB, 0, 1, 0, timeout=0.1)]
    proxy.drop_reply_of(shas["FEED_TAKE"])
    got += [via.fed_blob(JOB, 0, 1, seq, timeout=0.1) for seq in (1, 2, 3)]
    assert proxy.dropped == 1 and got == [b"a", b"b", b"c", b""]


def test_a_push_whose_reply_is_lost_appends_nothing_twice(broker, lossy):
    via, proxy, shas = lossy
    via.feed_blobs(JOB, 0, 1, 0, [b"a"])
    proxy.drop_reply_of(shas["FEED_PUSH"])
    via.feed_blobs(JOB, 0, 1, 1, [b"b", b"c"])
    via.feed_blobs(JOB, 0, 1, 3, [b""])
    assert proxy.dropped == 1 and _items(broker, 1) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"")]


def _blobs(rng: random.Random, n: int, keys_of) -> tuple[list[bytes], list[tuple]]:
    """n map blobs of random pairs, as run_map lays them out, and every pair in blob order."""
    blobs, pairs = [], []
    for b in range(n):
        groups: dict = collections.defaultdict(list)
        for j in range(rng.randint(0, 40)):
            key = keys_of(rng)
            groups[codec.group_key(key)].append([b, j])
            pairs.append((key, [b, j]))
        flat: list = []
        for ident, values in groups.items():
            flat += (codec.key_of(ident), values)
        blobs.append(codec.pack_blob(flat))
    return blobs, pairs


def test_sorted_runs_give_every_key_with_its_values_in_order_as_plain_python_groups_them(tmp_path):
    rng = random.Random(7)
    blobs, pairs = _blobs(rng, 60, lambda r: f"w{r.randint(0, 150):03d}")
    expected: dict = collections.defaultdict(list)
    for key, value in pairs:
        expected[key].append(tuple(value))
    with SortedRuns(run_bytes=2000) as runs:
        for blob in blobs:
            runs.add(blob)
        got = [(key, values) for key, values in runs.groups()]
        assert runs.runs > 5
    assert got == sorted(expected.items())


def test_sorted_runs_keep_mixed_keys_apart_and_in_the_in_memory_order():
    """1, 1.0, True, "1", (1,) and dicts whose items come in another order: every identity its
    own group, in the order the in-memory path gives (the one reduce tasks always used)."""
    pool = [1, 1.0, True, "1", (1,), None, -0.0, 0.0, {"a": 1, "b": 2}, {"b": 2, "a": 1}, ("x", 2), "zz"]
    rng = random.Random(3)
    blobs, _ = _blobs(rng, 40, lambda r: r.choice(pool))
    in_memory = list(tasks.sorted_groups(tasks.merge_blobs(blobs)))
    with SortedRuns(run_bytes=300) as runs:
        for blob in blobs:
            runs.add(blob)
        merged = list(runs.groups())
        assert runs.runs > 5
    assert [(codec.group_key(k), v) for k, v in merged] == [(codec.group_key(k), v) for k, v in in_memory]


def test_sorted_runs_remove_their_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    with SortedRuns(run_bytes=10) as runs:
        runs.add(codec.pack_blob(["k", [1]]))
        runs.add(codec.pack_blob(["k", [2]]))
        assert [(k, v) for k, v in runs.groups()] == [("k", [1, 2])]
        assert list(tmp_path.iterdir())
    assert not list(tmp_path.iterdir())
