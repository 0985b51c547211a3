"""Batches of tiny map tasks (mrctl.worker.batching): one claim takes several queued map tasks, each its
own attempt, lease, deadline and attempt-log entry, so fencing stays per task."""

from __future__ import annotations

import collections
import json
import threading
import time
from types import SimpleNamespace

import pytest
from conftest import sequential_wordcount
from jobs import WORDCOUNT, make_spec

from mrctl.backends import WorkerExit
from mrctl.broker import ClaimRequest, MapCommit, keys
from mrctl.broker.meta import JobMeta
from mrctl.errors import InfraError
from mrctl.master.driver import run_job
from mrctl.master.loop import Master
from mrctl.worker import batching
from mrctl.worker.heartbeat import BeatState, HeartbeatKeeper, KeeperOptions
from mrctl.worker.loop import Worker, WorkerOptions

JOB = "J"


def _queue_maps(broker, n, size=3):
    broker.publish_job(JOB, JobMeta(state="running", reducers=1), {"m.py": ""})
    broker.add_map_tasks(JOB, [(f"m:{i}", {"kind": "map", "index": i}, b"x" * (size - 1) + b"\n")
                               for i in range(n)])


def _done(claim):
    return MapCommit(claim.tid, claim.attempt, {0: claim.tid.encode()}, {"maps_done": 1})


def _log(broker):
    return [json.loads(e) for e in broker.r.lrange(keys.attempt_log(JOB), 0, -1)]


def test_a_batch_claim_takes_each_task_as_an_attempt_of_its_own(broker):
    _queue_maps(broker, 5)
    claims = broker.claim_tasks(JOB, ClaimRequest("w1", 30, 300, max_tasks=3, max_bytes=1 << 20))
    assert [(c.tid, c.attempt, c.data) for c in claims] == [(f"m:{i}", 1, b"xx\n") for i in range(3)]
    assert sorted(m.decode() for m in broker.r.zrange(keys.leases(JOB), 0, -1)) == ["m:0@1", "m:1@1", "m:2@1"]
    assert broker.r.zcard(keys.deadlines(JOB)) == 3
    assert all(broker.task(JOB, c.tid)["live:1"] == "w1" for c in claims)
    assert [(e[0], e[1]) for e in _log(broker)] == [("s", "m:0"), ("s", "m:1"), ("s", "m:2")]
    assert sorted(broker.attempts_of(JOB, "w1")) == [("m:0", 1), ("m:1", 1), ("m:2", 1)]
    assert [t.decode() for t in broker.r.lrange(keys.queue(JOB), 0, -1)] == ["m:3", "m:4"]


def test_a_batch_stops_at_its_byte_budget_at_a_reduce_and_at_a_backup(broker):
    _queue_maps(broker, 4, size=100)
    # the first task always comes; the next ones only while their chunks fit in max_bytes
    assert [c.tid for c in broker.claim_tasks(JOB, ClaimRequest("w1", 30, 300, 8, 250))] == ["m:0", "m:1"]
    broker.add_reduce_tasks(JOB, [0])
    assert [c.tid for c in broker.claim_tasks(JOB, ClaimRequest("w1", 30, 300, 8, 1 << 20))] == ["m:2", "m:3"]
    assert [c.tid for c in broker.claim_tasks(JOB, ClaimRequest("w1", 30, 300, 8, 1 << 20))] == ["r:0"]
    broker.add_map_tasks(JOB, [(f"m:{i}", {"kind": "map", "index": i}, b"y\n") for i in (4, 5)])
    assert broker.add_backup(JOB, "m:0")  # queued in front: a second attempt runs alone
    assert [(c.tid, c.attempt) for c in broker.claim_tasks(JOB, ClaimRequest("w2", 30, 300, 8, 1 << 20))] \
        == [("m:0", 2)]
    assert [c.tid for c in broker.claim_tasks(JOB, ClaimRequest("w2", 30, 300, 8, 1 << 20))] == ["m:4", "m:5"]


def test_a_batch_commits_each_task_fenced_and_claims_the_next_batch(broker):
    _queue_maps(broker, 6)
    first = broker.claim_tasks(JOB, ClaimRequest("w1", 30, 300, 3, 1 << 20))
    oks, nxt = broker.commit_maps_then_claim(JOB, "w1", [_done(c) for c in first],
                                             ClaimRequest("w1", 30, 300, 3, 1 << 20))
    assert oks == [True, True, True] and [c.tid for c in nxt] == ["m:3", "m:4", "m:5"]
    assert broker.stats(JOB)["maps_done"] == 3
    assert broker.r.hgetall(keys.part(JOB, 0)) == {b"0": b"m:0", b"1": b"m:1", b"2": b"m:2"}
    ends = [e for e in _log(broker) if e[0] == "e"]
    assert [(e[1], e[3]) for e in ends] == [("m:0", "committed"), ("m:1", "committed"), ("m:2", "committed")]


def test_a_batch_commit_sent_again_answers_as_before_and_counts_once(broker):
    """A commit Redis applied but whose reply was lost (a batch's early commit that raised, so
    its tasks go back to the batch's own commit) is sent again with the same request ids: it is
    answered 'committed' again, not refused, and counted once."""
    _queue_maps(broker, 3)
    done = [_done(c) for c in broker.claim_tasks(JOB, ClaimRequest("w1", 30, 300, 3, 1 << 20))]
    first, _ = broker.commit_maps_then_claim(JOB, "w1", done)
    again, _ = broker.commit_maps_then_claim(JOB, "w1", done)
    assert first == again == [True, True, True]
    stats = broker.stats(JOB)
    assert stats["maps_done"] == 3 and not stats.get("refused")
    assert [e[3] for e in _log(broker) if e[0] == "e"] == ["committed"] * 3


def test_the_keeper_renews_every_lease_of_a_batch_and_a_silent_batch_is_reaped_whole(broker):
    _queue_maps(broker, 3)
    claims = broker.claim_tasks(JOB, ClaimRequest("w1", 0.3, 300, 3, 1 << 20))
    held = [f"{c.tid}@{c.attempt}" for c in claims[1:]]
    for _ in range(4):  # 0.6 s, twice the lease: renewed, none reaped
        time.sleep(0.15)
        assert broker.heartbeat("w1", {}, JOB, claims[0].tid, claims[0].attempt, 0.3, held) == "live"
        assert broker.requeue_expired(JOB, max_attempts=4, task_timeout=300) == 0
    time.sleep(0.4)  # silent: every attempt of the batch is lost and requeued
    assert broker.requeue_expired(JOB, max_attempts=4, task_timeout=300) == 3
    assert sorted(t.decode() for t in broker.r.lrange(keys.queue(JOB), 0, -1)) == ["m:0", "m:1", "m:2"]


def test_a_zombies_late_commit_of_a_batched_task_is_refused(broker):
    _queue_maps(broker, 3)
    zombie = broker.claim_tasks(JOB, ClaimRequest("w1", 30, 300, 3, 1 << 20))
    # w1 dies holding its batch: the master ends every attempt it holds (worker_lost)
    for tid, attempt in broker.attempts_of(JOB, "w1"):
        assert broker.fail_attempt(JOB, tid, attempt, 4, "worker w1 exited", "", "lost") == 1
    # retries: each claimed alone
    again = [c for _ in range(3) for c in broker.claim_tasks(JOB, ClaimRequest("w2", 30, 300, 3, 1 << 20))]
    assert [(c.tid, c.attempt) for c in again] == [("m:0", 2), ("m:1", 2), ("m:2", 2)]
    # the zombie's late batch commit: refused task by task, nothing of it visible
    oks, _ = broker.commit_maps_then_claim(JOB, "w1", [_done(c) for c in zombie])
    assert oks == [False, False, False] and broker.r.hgetall(keys.part(JOB, 0)) == {}
    assert broker.stats(JOB)["refused"] == 3
    oks, _ = broker.commit_maps_then_claim(JOB, "w2", [_done(c) for c in again])
    assert oks == [True, True, True] and broker.stats(JOB)["maps_done"] == 3
    # each attempt logged its start once, and its end: lost (then refused: the zombie's late
    # commit), or committed
    starts = collections.Counter((e[1], e[2]) for e in _log(broker) if e[0] == "s")
    assert set(starts.values()) == {1} and len(starts) == 6
    ends = collections.defaultdict(list)
    for e in _log(broker):
        if e[0] == "e":
            ends[e[1], e[2]].append(e[3])
    assert all(ends[f"m:{i}", 1] == ["lost", "refused"] and ends[f"m:{i}", 2] == ["committed"] for i in range(3))


def test_a_replayed_batch_claim_answers_the_same_live_attempts(broker):
    _queue_maps(broker, 4)
    claim_keys = [keys.queue(JOB), keys.leases(JOB), keys.deadlines(JOB), keys.meta(JOB), keys.claimed(JOB, "w1"),
                  keys.attempt_log(JOB)]
    args = [keys.task_prefix(JOB), "w1", 30_000, 300_000, keys.chunk_prefix(JOB), keys.part_prefix(JOB),
            keys.REPLY_TTL_MS, 3, 1 << 20, "replayed"]
    assert [c[0] for c in broker._claim(keys=claim_keys, args=args)] == [b"m:0", b"m:1", b"m:2"]
    assert broker.fail_attempt(JOB, "m:1", 1, 4, "lease expired", "", "lost") == 1  # reaped meanwhile
    assert [c[0] for c in broker._claim(keys=claim_keys, args=args)] == [b"m:0", b"m:2"]
    assert [t.decode() for t in broker.r.lrange(keys.queue(JOB), 0, -1)] == ["m:3", "m:1"]


# Where a worker is in its claim, for a job's code to act inside a batch: read from the worker's
# own log, which says when a batch (of more than one task) starts and how many it holds, when a
# lone task starts, and when a batch is cut. `started` counts the batch's tasks begun (the
# mappers' setup). No braces: it goes into sources that are .format()ted.
BATCH_POSITION = """
import logging


class BatchPosition(logging.Handler):
    in_batch = False
    size = started = 0

    def emit(self, record):
        message = str(record.msg)
        if message.startswith("batch of") and message.endswith("start: %s"):
            BatchPosition.in_batch, BatchPosition.size, BatchPosition.started = True, record.args[0], 0
        elif record.levelno >= logging.INFO and (message.startswith("task %s attempt %d start")
                                                 or message.endswith("go back")):
            BatchPosition.in_batch = False


logging.getLogger("mrctl.worker.loop").addHandler(BatchPosition())
"""


# A worker that dies (SIGKILL, from inside its own task) the first time it meets a poison
# line while it holds a batch of tiny tasks.
DIES_HOLDING_A_BATCH = WORDCOUNT + BATCH_POSITION + '''
import os, signal


class DyingMapper(WordMapper):
    def map(self, line):
        if "poison" in line and BatchPosition.in_batch and not os.path.exists({marker!r}):
            open({marker!r}, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        yield from super().map(line)
'''


def test_a_worker_killed_holding_a_batch_loses_it_whole_and_each_task_runs_again_once(tmp_path):
    lines = [f"line {i} of the tiny tasks, words words words" for i in range(6000)]
    lines[4000:] = [f"the poison line {i}" for i in range(4000, 6000)]  # the first met in a batch kills
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n")
    spec = make_spec(tmp_path, DIES_HOLDING_A_BATCH.format(marker=str(tmp_path / "killed")), [path],
                     mapper="DyingMapper", workers=2, reducers=2, chunk_size=300)
    records = []
    final = run_job(spec, on_record=records.append)
    assert spec.output_path.read_text(encoding="utf-8") == sequential_wordcount([path])
    maps = [a for a in records[0].attempts if a.tid.startswith("m:")]
    lost = {a.tid for a in maps if a.outcome == "lost"}
    committed = collections.Counter(a.tid for a in maps if a.outcome == "committed")
    print(f"{final.map.total} map tasks; the killed worker held {len(lost)}")
    assert len(lost) >= 2, "the worker held a single task, not a batch"
    assert final.lost == len(lost) and final.failed_attempts == 0 and final.refused == 0
    # every map task committed exactly once; those of the killed batch ran exactly twice
    assert len(committed) == final.map.total and set(committed.values()) == {1}
    # (a batch over its time slice on a loaded machine gives back its unstarted tasks: those
    # 'released' attempts never ran and count nothing, so they are not runs)
    attempts = collections.Counter(a.tid for a in maps if a.outcome != "released")
    assert all(attempts[tid] == 2 for tid in lost) and sum(attempts.values()) == final.map.total + len(lost)
    assert all(a.outcome != "running" for a in records[0].attempts)  # every attempt logged its end


def test_the_master_queues_a_batch_of_map_tasks_in_one_call_each_once(broker):
    """ADD_MAP_TASKS: the fields travel as one JSON text and land as ADD_TASK would store them;
    a task already there (a retried call) is not queued twice; idle workers get a token each."""
    broker.publish_job(JOB, JobMeta(state="running", reducers=1), {"m.py": ""})
    broker.r.delete(keys.wake())
    fields = {"kind": "map", "index": 0, "file": "dír/😀 \\xff.txt", "start": 12_345_678_901_234, "first_line": 1}
    broker.add_map_tasks(JOB, [("m:0", fields, b"a\n"), ("m:1", {**fields, "index": 1}, b"")])
    broker.add_map_tasks(JOB, [("m:1", {**fields, "index": 1}, b"changed"), ("m:2", {**fields, "index": 2}, b"c\n")])
    assert broker.task(JOB, "m:0") == {"state": "pending", "attempt": "0", "kind": "map", "index": "0",
                                       "file": "dír/😀 \\xff.txt", "start": "12345678901234", "first_line": "1"}
    assert broker.r.get(keys.chunk(JOB, "m:1")) == b"" and broker.r.get(keys.chunk(JOB, "m:2")) == b"c\n"
    assert [t.decode() for t in broker.r.lrange(keys.queue(JOB), 0, -1)] == ["m:0", "m:1", "m:2"]
    assert broker.r.llen(keys.wake()) == 3


def _keeper(broker, name="w1"):
    return HeartbeatKeeper(KeeperOptions(broker.url, name, worker_pid=0, signal_worker=False), broker, None)


class _Beats:
    """The worker's side of the keeper pipe: the state the keeper would hold."""

    def __init__(self):
        self.state = BeatState()

    def report(self, **changes):
        for k, v in changes.items():
            setattr(self.state, k, v)

    def check(self):
        pass

    def interruption(self):
        return None


def test_a_release_counts_nothing_requeues_at_the_front_and_logs_released(broker):
    _queue_maps(broker, 5)
    claims = broker.claim_tasks(JOB, ClaimRequest("w1", 30, 300, 3, 1 << 20))
    before = broker.stats(JOB)
    broker.release_attempts(JOB, [(c.tid, c.attempt) for c in claims[1:]], "worker w1 released it")
    assert [t.decode() for t in broker.r.lrange(keys.queue(JOB), 0, -1)] == ["m:2", "m:1", "m:3", "m:4"]
    for tid in ("m:1", "m:2"):
        t = broker.task(JOB, tid)
        assert t["state"] == "pending" and t["live"] == "0" and "live:1" not in t
        assert not {"losses", "failures", "error", "error_kind"} & set(t)
    assert broker.stats(JOB) == before and broker.meta(JOB).state == "running"
    assert broker.events(JOB) == []
    assert broker.attempts_of(JOB, "w1") == [("m:0", 1)]
    ends = [(e[1], e[2], e[3]) for e in _log(broker) if e[0] == "e"]
    assert ends == [("m:1", 1, "released"), ("m:2", 1, "released")]
    # fenced: only a live attempt is released; a second release, or one of a committed task, is a no-op
    broker.release_attempts(JOB, [("m:1", 1)], "again")
    oks, _ = broker.commit_maps_then_claim(JOB, "w1", [_done(claims[0])])
    broker.release_attempts(JOB, [("m:0", 1)], "too late")
    assert oks == [True] and broker.committed_attempt(JOB, "m:0") > 0
    assert broker.r.llen(keys.queue(JOB)) == 4 and len([e for e in _log(broker) if e[0] == "e"]) == 3
    # a released task was never tried: it joins a batch again, with its next attempt
    assert [(c.tid, c.attempt) for c in broker.claim_tasks(JOB, ClaimRequest("w2", 30, 300, 8, 1 << 20))] \
        == [("m:2", 2), ("m:1", 2), ("m:3", 1), ("m:4", 1)]


def test_a_retry_is_never_batched_behind_another_task(broker):
    _queue_maps(broker, 6)
    claims = broker.claim_tasks(JOB, ClaimRequest("w1", 30, 300, 3, 1 << 20))
    assert broker.fail_attempt(JOB, "m:1", 1, 4, "boom", "", "error") == 1  # requeued at the back
    assert broker.fail_attempt(JOB, "m:2", 1, 4, "lease expired", "", "lost") == 1
    broker.commit_maps_then_claim(JOB, "w1", [_done(claims[0])])
    assert [t.decode() for t in broker.r.lrange(keys.queue(JOB), 0, -1)] == ["m:3", "m:4", "m:5", "m:1", "m:2"]
    big = ClaimRequest("w2", 30, 300, 32, 1 << 20)
    # the batch stops before a retry: it goes back to the front
    assert [c.tid for c in broker.claim_tasks(JOB, big)] == ["m:3", "m:4", "m:5"]
    # a retry is claimed only as a batch's first, and then alone: blamed alone
    assert [(c.tid, c.attempt) for c in broker.claim_tasks(JOB, big)] == [("m:1", 2)]
    assert [(c.tid, c.attempt) for c in broker.claim_tasks(JOB, big)] == [("m:2", 2)]


def test_a_dead_worker_holding_a_batch_loses_it_all_and_only_a_lone_attempt_is_blamed_for_oom(broker):
    _queue_maps(broker, 3)
    master = SimpleNamespace(broker=broker, job=JOB, spec=SimpleNamespace(max_attempts=4))
    assert [c.tid for c in broker.claim_tasks(JOB, ClaimRequest("w1", 30, 300, 2, 1 << 20))] == ["m:0", "m:1"]
    Master.worker_lost(master, WorkerExit("w1", "killed: out of memory", oom=True))
    for tid in ("m:0", "m:1"):
        t = broker.task(JOB, tid)
        assert (t["state"], t["error_kind"], t["losses"]) == ("pending", "lost", "1") and "failures" not in t
    assert broker.stats(JOB).get("failed_attempts", 0) == 0
    # each runs alone now; a lone attempt whose worker ran out of memory is blamed for it
    assert [c.tid for c in broker.claim_tasks(JOB, ClaimRequest("w2", 30, 300, 32, 1 << 20))] == ["m:2"]
    broker.r.lrem(keys.queue(JOB), 0, "m:0")  # m:0 first in line
    broker.r.lpush(keys.queue(JOB), "m:0")
    assert [c.tid for c in broker.claim_tasks(JOB, ClaimRequest("w3", 30, 300, 32, 1 << 20))] == ["m:0"]
    Master.worker_lost(master, WorkerExit("w3", "killed: out of memory", oom=True))
    t = broker.task(JOB, "m:0")
    assert (t["error_kind"], t["failures"]) == ("oom", "1")
    assert "failures" not in broker.task(JOB, "m:1") and broker.meta(JOB).state == "running"


def test_the_keeper_never_ends_an_attempt_its_worker_holds(broker):
    """A batch whose task runs long: the keeper only renews every lease it holds."""
    _queue_maps(broker, 3)
    claims = broker.claim_tasks(JOB, ClaimRequest("w1", 30, 300, 3, 1 << 20))
    keeper = _keeper(broker)
    keeper.update(BeatState(JOB, "m:0", 1, user_code=True, lease_s=30, task_timeout=300,
                            held=[f"{c.tid}@{c.attempt}" for c in claims[1:]]), now=100.0)
    for now in (100.5, 102.0, 130.0):
        assert keeper.tick(now) is None
    assert broker.attempts_of(JOB, "w1") == [("m:0", 1), ("m:1", 1), ("m:2", 1)]
    assert broker.r.llen(keys.queue(JOB)) == 0 and broker.stats(JOB).get("lost", 0) == 0


def test_an_infra_error_in_a_batch_commit_leaves_the_keeper_idle(broker, monkeypatch):
    """Redis fails the batch's commit (retries exhausted): the keeper hears the worker is idle,
    stops renewing the batch's leases, and the tasks are reaped as lost (not counted), never
    as timed out, and no interruption reaches a healthy idle worker."""
    broker.publish_job(JOB, JobMeta(state="running", reducers=1, lease_s=0.3, task_timeout=2), {"m.py": ""})
    broker.add_map_tasks(JOB, [(f"m:{i}", {"kind": "map", "index": i}, b"xx\n") for i in range(2)])
    w = Worker(broker, name="w1", options=WorkerOptions(interrupt_main=False))
    w.beats = _Beats()
    w._job = JOB
    w._sizer.per_task_s = 1e-4  # fast tasks measured: a batch of up to 32

    def execute(job, meta, claim, done):
        done.append(_done(claim))
        return None, 1

    monkeypatch.setattr(w, "_execute", execute)

    def down(*a, **k):
        raise InfraError("Redis went away (retries exhausted)")

    monkeypatch.setattr(broker, "commit_maps_then_claim", down)
    with pytest.raises(InfraError):
        w.tick()
    s = w.beats.state
    assert (s.tid, s.user_code, s.held) == (None, False, [])  # told: idle
    monkeypatch.undo()
    keeper = _keeper(broker)
    keeper.update(BeatState(**vars(s)), now=0.0)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.9:  # 3 leases long
        assert keeper.tick(time.monotonic() - t0) is None
        broker.requeue_expired(JOB, 4, 2)
        time.sleep(0.1)
    for tid in ("m:0", "m:1"):
        t = broker.task(JOB, tid)
        assert (t["state"], t["error_kind"], t["losses"]) == ("pending", "lost", "1") and "failures" not in t


SLOW_LINES = BATCH_POSITION + """

import threading
import time


class SlowMapper(WordMapper):
    def setup(self):
        BatchPosition.started += 1

    def map(self, line):  # slow where it holds up the rest of a batch
        if "slow" in line and BatchPosition.in_batch and BatchPosition.started < BatchPosition.size:
            time.sleep(float(line.split()[-1]))
        yield from super().map(line)
"""


@pytest.mark.slow
def test_a_slow_task_in_a_batch_releases_the_rest_which_others_run_each_once(tmp_path):
    """Tiny tasks and a few slow ones (half a second each, where tasks of their batch follow
    them): a batch meeting a slow task stops after it, commits what it ran and releases its
    unstarted tasks, which other workers run. No task runs twice, no commit is refused, nothing
    is lost or counted against the job."""
    lines = [f"line {i} of the tiny tasks, words words words" for i in range(1500)]
    for k in range(300, 1500, 100):
        lines[k] = "a slow line 0.5"
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n")
    spec = make_spec(tmp_path, WORDCOUNT + SLOW_LINES, [path], mapper="SlowMapper", workers=3, reducers=2,
                     chunk_size=120)
    records = []
    t0 = time.monotonic()
    final = run_job(spec, on_record=records.append)
    took = time.monotonic() - t0
    assert spec.output_path.read_text(encoding="utf-8") == sequential_wordcount([path])
    maps = [a for a in records[0].attempts if a.tid.startswith("m:")]
    outcomes = collections.Counter(a.outcome for a in maps)
    print(f"{final.map.total} map tasks in {took:.1f}s: {dict(outcomes)}")
    assert set(outcomes) <= {"committed", "released"} and outcomes["released"] > 0
    assert final.lost == 0 and final.refused == 0 and final.failed_attempts == 0 and final.retries == 0
    committed = collections.Counter(a.tid for a in maps if a.outcome == "committed")
    assert len(committed) == final.map.total and set(committed.values()) == {1}
    assert batching.SLICE_S < 0.5


HANG_IN_BATCH = BATCH_POSITION + """
import os, time


class HangOnceMapper(WordMapper):
    \"""Hangs once, on a needle line of a task that is not the first of its batch (so the batch
    has finished tasks while it hangs), until task_timeout interrupts it.\"""

    def setup(self):
        BatchPosition.started += 1

    def map(self, line):
        if ("needle" in line and BatchPosition.in_batch and BatchPosition.started > 1
                and not os.path.exists({marker!r})):
            open({marker!r}, "w").close()
            time.sleep(3600)  # interrupted by task_timeout
        yield from super().map(line)
"""


@pytest.mark.slow
def test_a_task_hanging_in_a_batch_leaves_its_finished_tasks_committed_and_uncharged(tmp_path):
    """One worker, tiny tasks in batches, one task that hangs until task_timeout: the tasks of
    its batch that had finished are committed while it hangs, and those not started released
    (neither left to reach the claim's deadline with it), so the hung attempt is the only one
    timed out and nothing else is charged or committed twice. (The task that hangs is the first
    with a needle line that is not the first of its batch: where batches begin depends on the
    worker's measured pace.)"""
    lines = [f"line {i} of the tiny tasks, words words words" for i in range(1200)]
    lines[600:] = [f"the needle line {i}" for i in range(600, 1200)]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n")
    source = WORDCOUNT + HANG_IN_BATCH.format(marker=str(tmp_path / "hung"))
    spec = make_spec(tmp_path, source, [path], mapper="HangOnceMapper", workers=1, reducers=2,
                     chunk_size=120, task_timeout=3.0)
    records = []
    final = run_job(spec, on_record=records.append)
    assert (tmp_path / "hung").exists()
    assert spec.output_path.read_text(encoding="utf-8") == sequential_wordcount([path])
    maps = [a for a in records[0].attempts if a.tid.startswith("m:")]
    hung = [a for a in maps if a.outcome == "timeout"]
    assert len(hung) == 1
    batch = [a for a in maps if a.start == hung[0].start and a.worker == hung[0].worker and a is not hung[0]]
    finished = [a for a in batch if a.outcome == "committed"]
    assert finished, f"no task of the hung one's batch finished before it: {batch}"  # what this test is about
    assert all(a.end < hung[0].end for a in finished), (finished, hung)  # committed while it hung
    # and the batch's tasks after it were released (counted nowhere) while it hung, and ran again
    assert {a.outcome for a in batch} <= {"committed", "released"}, batch
    assert all(a.end < hung[0].end for a in batch if a.outcome == "released")
    assert final.timeouts == 1 and final.failed_attempts == 1 and final.lost == 0 and final.refused == 0
    committed = collections.Counter(a.tid for a in maps if a.outcome == "committed")
    assert len(committed) == final.map.total and set(committed.values()) == {1}


def test_one_watch_thread_flushes_each_batch_that_runs_long_and_no_other():
    """BatchWatch flushes a long batch's finished tasks and its unstarted claims once its time
    is up (the batch then starts none of them); a batch that ends in time is never flushed; the
    same thread serves the next batch after sleeping between batches."""
    flushed: list[tuple[str, list, list]] = []
    watches = lambda: sum(t.name == "batch-watch" for t in threading.enumerate())  # noqa: E731
    before = watches()
    watch = batching.BatchWatch()

    def batch(name):
        return batching.BatchInFlight(["c0", "c1", "c2"],
                                      lambda done, unstarted: flushed.append((name, done, unstarted)))

    def flushes(n: int, within: float) -> list[str]:
        """The names flushed, once there are n (polled under a deadline: the thread is the OS's
        to schedule on a loaded machine)."""
        deadline = time.monotonic() + within
        while len(flushed) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return [f[0] for f in flushed]

    long = batch("long")
    watch.watch(long, 0.1)
    assert long.start(0)
    long.append("t0")
    assert long.start(1)  # runs long
    assert flushes(1, 5.0) == ["long"] and flushed[0] == ("long", ["t0"], ["c2"])
    assert not long.start(2)  # released by the flush
    watch.unwatch()
    assert long.close(2) == ([], [])  # nothing left: committed and released already

    quick = batch("quick")
    watch.watch(quick, 1.0)
    assert quick.start(0)
    quick.append("t0")
    watch.unwatch()
    assert quick.close(1) == (["t0"], ["c1", "c2"])
    time.sleep(1.2)  # past quick's due time: the thread has gone to sleep between batches
    again = batch("again")
    watch.watch(again, 0.1)
    assert again.start(0)
    assert flushes(2, 5.0) == ["long", "again"] and flushed[1] == ("again", [], ["c1", "c2"])
    watch.unwatch()
    # a batch due sooner than the one the thread waits for (a job with a shorter task_timeout
    # after one with a longer) is flushed in its own time, long before the other's 5 s
    slow = batch("slow")
    watch.watch(slow, 5.0)
    watch.unwatch()
    slow.close(0)
    soon = batch("soon")
    watch.watch(soon, 0.1)
    assert soon.start(0)
    assert flushes(3, 3.0) == ["long", "again", "soon"]
    watch.unwatch()
    time.sleep(0.2)  # nothing more comes of the batches unwatched
    assert [f[0] for f in flushed] == ["long", "again", "soon"]
    assert watches() == before + 1
