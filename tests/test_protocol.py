"""The task protocol at the Redis level: claims, leases, fencing, retries (real redis-server)."""

from __future__ import annotations

import time

from mrctl.broker import keys
from mrctl.broker.meta import JobMeta

JOB = "j1"


def _publish(broker, max_attempts=4):
    broker.publish_job(JOB, JobMeta(state="running", max_attempts=max_attempts), {"job.py": ""})
    broker.add_map_task(JOB, "m:0", {"kind": "map", "index": 0}, b"some input\n")


def test_key_layout_is_pinned():
    # These strings are the wire protocol between master and workers: change them knowingly.
    assert keys.current_job() == "mrctl:current"
    assert keys.queue("J") == "mrctl:J:queue"
    assert keys.task("J", "m:3") == "mrctl:J:task:m:3"
    assert keys.chunk("J", "m:3") == "mrctl:J:chunk:m:3" and keys.chunk_prefix("J") == "mrctl:J:chunk:"
    assert keys.part("J", 2) == "mrctl:J:part:2"
    assert keys.feed("J", 2, 3) == "mrctl:J:feed:2:3"
    assert keys.fed("J") == "mrctl:J:fed"
    assert keys.out("J", 2) == "mrctl:J:out:2"
    assert keys.leases("J") == "mrctl:J:leases"
    assert keys.deadlines("J") == "mrctl:J:deadlines"
    assert keys.stats("J") == "mrctl:J:stats"
    assert keys.events("J") == "mrctl:J:events"
    assert keys.meta("J") == "mrctl:J:meta" and keys.code("J") == "mrctl:J:code"
    assert keys.workers() == "mrctl:workers" and keys.beats() == "mrctl:beats"
    assert keys.reply("J", "ab12") == "mrctl:J:reply:ab12"
    assert keys.bad_records("J") == "mrctl:J:bad"
    assert keys.counter_field("words", "a:b") == "counter:words:a:b"
    assert keys.parse_counter_field("counter:words:a:b") == ("words", "a:b")
    assert keys.parse_counter_field("maps_done") is None


def test_claim_moves_task_into_a_visible_leased_record(broker):
    _publish(broker)
    claim = broker.claim_task(JOB, "w1", lease_s=10, timeout_s=60)
    assert (claim.tid, claim.attempt, claim.data) == ("m:0", 1, b"some input\n")
    assert broker.running(JOB) == ["m:0"]
    assert broker.task(JOB, "m:0")["worker"] == "w1"
    assert broker.r.llen(keys.queue(JOB)) == 0
    assert broker.claim_task(JOB, "w2", 10, 60) is None


def test_late_commit_of_a_superseded_attempt_is_refused(broker):
    _publish(broker)
    zombie = broker.claim_task(JOB, "w1", lease_s=0.1, timeout_s=60)
    time.sleep(0.25)  # w1 stops heartbeating: its lease runs out
    assert broker.requeue_expired(JOB, max_attempts=4, task_timeout=60) == 1
    assert broker.heartbeat("w1", {}, JOB, "m:0", zombie.attempt, 10) == "ended"
    current = broker.claim_task(JOB, "w2", lease_s=10, timeout_s=60)
    assert current.attempt == 2

    assert broker.commit_map(JOB, "m:0", zombie.attempt, "w1", {0: b"zombie"}, {"maps_done": 1}) is False
    assert broker.r.hgetall(keys.part(JOB, 0)) == {}  # nothing of the zombie is visible
    assert broker.fail_attempt(JOB, "m:0", zombie.attempt, 4, "late", "") == 0

    assert broker.commit_map(JOB, "m:0", current.attempt, "w2", {0: b"good"}, {"maps_done": 1}) is True
    assert broker.r.hgetall(keys.part(JOB, 0)) == {b"0": b"good"}
    stats = broker.stats(JOB)
    assert stats["refused"] == 1 and stats["maps_done"] == 1 and stats["lost"] == 1
    assert broker.r.exists(keys.chunk(JOB, "m:0")) == 0  # consumed input is deleted
    assert [e["kind"] for _, e in broker.events(JOB)] == ["retry", "refused"]


def test_user_counters_and_skipped_records_travel_only_with_a_successful_commit(broker):
    _publish(broker)
    first = broker.claim_task(JOB, "w1", lease_s=10, timeout_s=60)
    assert broker.fail_attempt(JOB, "m:0", first.attempt, 4, "boom", "") == 1  # retried
    second = broker.claim_task(JOB, "w2", lease_s=10, timeout_s=60)
    counted = {("words", "seen"): 5, ("words", "a:b"): -2}
    assert broker.commit_map(JOB, "m:0", first.attempt, "w1", {0: b"x"}, {"maps_done": 1, "bad_records": 1},
                             counted, [("a.txt", 1, "ValueError: no")]) is False
    stats = broker.stats(JOB)
    assert not any(k.startswith("counter:") for k in stats) and "bad_records" not in stats
    assert broker.bad_records(JOB) == {}
    assert broker.commit_map(JOB, "m:0", second.attempt, "w2", {0: b"x"}, {"maps_done": 1, "bad_records": 1},
                             {("words", "seen"): 3}, [("a.txt", 5, "ValueError: bad")]) is True
    stats = broker.stats(JOB)
    assert stats["counter:words:seen"] == 3 and "counter:words:a:b" not in stats and stats["bad_records"] == 1
    assert broker.bad_records(JOB) == {"m:0": [("a.txt", 5, "ValueError: bad")]}


def test_heartbeat_keeps_the_lease_alive(broker):
    _publish(broker)
    claim = broker.claim_task(JOB, "w1", lease_s=0.3, timeout_s=60)
    for _ in range(4):
        time.sleep(0.15)
        assert broker.heartbeat("w1", {"state": "mapping"}, JOB, "m:0", claim.attempt, 0.3) == "live"
        assert broker.requeue_expired(JOB, 4, 60) == 0
    assert broker.running(JOB) == ["m:0"]


def test_task_timeout_ends_an_attempt_even_with_a_live_heartbeat(broker):
    _publish(broker)
    claim = broker.claim_task(JOB, "w1", lease_s=10, timeout_s=0.2)
    time.sleep(0.3)
    broker.heartbeat("w1", {}, JOB, "m:0", claim.attempt, 10)
    assert broker.requeue_expired(JOB, 4, 0.2) == 1
    task = broker.task(JOB, "m:0")
    assert task["state"] == "pending" and task["error_kind"] == "timeout"
    assert broker.stats(JOB)["timeouts"] == 1


def test_failures_are_retried_then_fail_the_job_at_max_attempts(broker):
    _publish(broker, max_attempts=3)
    outcomes = []
    for _ in range(3):
        claim = broker.claim_task(JOB, "w1", 10, 60)
        outcomes.append(broker.fail_attempt(JOB, "m:0", claim.attempt, 3, "boom", "tb"))
    assert outcomes == [1, 1, 2]
    assert broker.meta(JOB).state == "failed" and broker.meta(JOB).failed_task == "m:0"
    assert broker.claim_task(JOB, "w1", 10, 60) is None  # a failed job hands out no more work
    assert broker.stats(JOB)["retries"] == 2 and broker.stats(JOB)["failures"] == 1


def test_backup_attempt_first_commit_wins_and_the_original_is_refused(broker):
    _publish(broker)
    original = broker.claim_task(JOB, "w1", 10, 60)
    broker.add_backup(JOB, "m:0")
    backup = broker.claim_task(JOB, "w2", 10, 60)
    assert (backup.tid, backup.attempt, backup.data) == ("m:0", 2, b"some input\n")
    assert broker.running(JOB) == ["m:0"]
    attempts, _ = broker.running_attempts(JOB, 60)
    assert sorted(a for _, a, _ in attempts) == [1, 2]

    assert broker.commit_map(JOB, "m:0", backup.attempt, "w2", {0: b"backup"}, {"maps_done": 1}) is True
    assert broker.running(JOB) == [] and broker.r.zcard(keys.leases(JOB)) == 0
    assert broker.heartbeat("w1", {}, JOB, "m:0", original.attempt, 10) == "cancelled"
    assert broker.commit_map(JOB, "m:0", original.attempt, "w1", {0: b"orig"}, {"maps_done": 1}) is False
    assert broker.r.hgetall(keys.part(JOB, 0)) == {b"0": b"backup"}
    stats = broker.stats(JOB)
    assert stats["maps_done"] == 1 and stats["refused"] == 1


def test_a_lost_backup_leaves_the_original_running_and_does_not_requeue(broker):
    _publish(broker)
    original = broker.claim_task(JOB, "w1", 10, 60)
    broker.add_backup(JOB, "m:0")
    backup = broker.claim_task(JOB, "w2", 0.1, 60)
    time.sleep(0.25)  # the backup's worker dies: only its lease runs out
    broker.heartbeat("w1", {}, JOB, "m:0", original.attempt, 10)
    assert broker.requeue_expired(JOB, 4, 60) == 1
    assert broker.r.llen(keys.queue(JOB)) == 0  # the original still runs: nothing to requeue
    assert broker.task(JOB, "m:0")["state"] == "running"
    assert broker.commit_map(JOB, "m:0", backup.attempt, "w2", {0: b"late"}, {"maps_done": 1}) is False
    assert broker.commit_map(JOB, "m:0", original.attempt, "w1", {0: b"orig"}, {"maps_done": 1}) is True
    assert broker.r.hgetall(keys.part(JOB, 0)) == {b"0": b"orig"}


def test_a_backup_queued_for_a_task_that_then_committed_is_skipped(broker):
    _publish(broker)
    broker.add_map_task(JOB, "m:1", {"kind": "map", "index": 1}, b"more\n")
    original = broker.claim_task(JOB, "w1", 10, 60)
    broker.add_backup(JOB, "m:0")
    assert broker.commit_map(JOB, "m:0", original.attempt, "w1", {0: b"orig"}, {"maps_done": 1}) is True
    nxt = broker.claim_task(JOB, "w2", 10, 60)
    assert nxt.tid == "m:1"  # the stale backup entry of m:0 was dropped, not run
    assert broker.committed_attempt(JOB, "m:0") == 1 and broker.r.llen(keys.queue(JOB)) == 0


def test_a_task_requeued_while_its_backup_is_queued_is_queued_once(broker):
    _publish(broker)
    original = broker.claim_task(JOB, "w1", 10, 60)
    broker.add_backup(JOB, "m:0")
    assert broker.fail_attempt(JOB, "m:0", original.attempt, 4, "boom", "") == 1
    assert broker.r.lrange(keys.queue(JOB), 0, -1) == [b"m:0"]
    assert broker.claim_task(JOB, "w2", 10, 60).attempt == 2
    assert broker.claim_task(JOB, "w3", 10, 60) is None


def test_a_failed_backup_does_not_fail_the_task_while_the_original_runs(broker):
    _publish(broker, max_attempts=2)
    first = broker.claim_task(JOB, "w1", 10, 60)
    assert broker.fail_attempt(JOB, "m:0", first.attempt, 2, "boom", "") == 1  # failure 1 of 2
    original = broker.claim_task(JOB, "w1", 10, 60)
    assert broker.add_backup(JOB, "m:0") is True
    assert broker.add_backup(JOB, "m:0") is True  # queued twice, claimed once below
    backup = broker.claim_task(JOB, "w2", 10, 60)
    assert broker.add_backup(JOB, "m:0") is False  # two attempts run: no third
    assert broker.fail_attempt(JOB, "m:0", backup.attempt, 2, "boom", "") == 1
    assert broker.meta(JOB).state == "running"  # failure 2 of 2, but the original still runs
    assert broker.stats(JOB)["retries"] == 1  # only the real requeue counts as a retry
    assert broker.commit_map(JOB, "m:0", original.attempt, "w1", {0: b"orig"}, {"maps_done": 1}) is True
    assert broker.claim_task(JOB, "w3", 10, 60) is None  # the stale queued backup is skipped


def test_the_last_attempt_failing_at_max_attempts_fails_the_task(broker):
    _publish(broker, max_attempts=2)
    original = broker.claim_task(JOB, "w1", 10, 60)
    broker.add_backup(JOB, "m:0")
    backup = broker.claim_task(JOB, "w2", 10, 60)
    assert broker.fail_attempt(JOB, "m:0", backup.attempt, 2, "boom", "") == 1
    assert broker.fail_attempt(JOB, "m:0", original.attempt, 2, "boom", "") == 2
    assert broker.meta(JOB).state == "failed"


def test_lost_attempts_are_counted_apart_from_failed_ones(broker):
    """Issue 11.5: a worker killed from outside is not the code's failure (Hadoop's KILLED vs
    FAILED): max_attempts counts failures; lost attempts have their own, larger limit."""
    _publish(broker, max_attempts=1)
    for n in range(1, 4):
        claim = broker.claim_task(JOB, "w1", 10, 60)
        assert broker.fail_attempt(JOB, "m:0", claim.attempt, 1, "worker died", "", "lost", max_lost=4) == 1
        assert broker.task(JOB, "m:0")["losses"] == str(n) and broker.meta(JOB).state == "running"
    claim = broker.claim_task(JOB, "w1", 10, 60)
    assert broker.fail_attempt(JOB, "m:0", claim.attempt, 1, "worker died", "", "lost", max_lost=4) == 2
    assert broker.meta(JOB).state == "failed"
    assert broker.stats(JOB)["lost"] == 4 and broker.stats(JOB).get("failed_attempts", 0) == 0


def test_out_of_memory_counts_toward_max_attempts(broker):
    _publish(broker, max_attempts=2)
    claim = broker.claim_task(JOB, "w1", 10, 60)
    assert broker.fail_attempt(JOB, "m:0", claim.attempt, 2, "out of memory", "", "oom") == 1
    claim = broker.claim_task(JOB, "w1", 10, 60)
    assert broker.fail_attempt(JOB, "m:0", claim.attempt, 2, "boom", "tb") == 2
    assert broker.stats(JOB)["failed_attempts"] == 2 and broker.stats(JOB).get("lost", 0) == 0
