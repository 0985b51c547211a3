"""Issue 23.1: a commit applies every effect or none, whatever the user's values.

Counters are exact integers of any size (a counter past Redis's 64 bits made a commit fail
half-way: the task's counts landed, its output did not, and the run exited 0 without it).
Each way a commit can be refused is driven here against a real redis-server, and every key is
compared before and after. Expected totals are Python's own integer sums.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from mrctl.broker import RedisFull, keys
from mrctl.broker.meta import JobMeta
from mrctl.errors import InfraError

JOB = "j1"


def _publish(broker, n_maps: int = 1) -> None:
    broker.publish_job(JOB, JobMeta(state="running", max_attempts=4), {"job.py": ""})
    for i in range(n_maps):
        broker.add_map_task(JOB, f"m:{i}", {"kind": "map", "index": i}, b"some input\n")


def _keys_and_values(broker) -> dict[bytes, bytes]:
    """Every key of the Redis with its serialized value (DUMP): equal iff nothing changed."""
    return {k: broker.r.dump(k) for k in sorted(broker.r.scan_iter(count=1000))}


def _user_total(broker, group: str, name: str) -> int:
    return broker.stats(JOB)[keys.counter_field(group, name)]


def test_counters_past_64_bits_add_up_exactly_in_any_order(broker):
    rng = random.Random(23)
    amounts = [2 * 10**18] * 8 + [-(10**19), 3, -5] + [rng.randrange(-(10**40), 10**40) for _ in range(60)]
    amounts += [rng.randrange(-(10**6), 10**6) for _ in range(20)]  # the small path, crossing zero
    _publish(broker, len(amounts))
    running = 0
    for i, amount in enumerate(amounts):
        claim = broker.claim_task(JOB, "w1", 10, 60)
        assert broker.commit_map(JOB, claim.tid, claim.attempt, "w1", {0: b"x"}, {"maps_done": 1},
                                 {("big", "total"): amount, ("big", "count"): 1}) is True
        running += amount
        # read back after every commit: each partial sum is exact, through both of the
        # script's paths (HINCRBY while small, decimal strings past 17 digits) and back
        assert _user_total(broker, "big", "total") == running, i
    assert _user_total(broker, "big", "count") == len(amounts)
    assert broker.stats(JOB)["maps_done"] == len(amounts)


def test_a_counter_that_cannot_be_added_to_refuses_the_whole_commit(broker):
    """Checked before the first write: no output, no state change, no other counter."""
    _publish(broker)
    claim = broker.claim_task(JOB, "w1", 10, 60)
    broker.r.hset(keys.stats(JOB), keys.counter_field("g", "bad"), "not a number")
    before = _keys_and_values(broker)
    with pytest.raises(InfraError, match="counter:g:bad holds not a number"):
        broker.commit_map(JOB, claim.tid, claim.attempt, "w1", {0: b"out"}, {"maps_done": 1, "records_in": 1},
                          {("g", "fine"): 5, ("g", "bad"): 1})
    assert _keys_and_values(broker) == before


def test_an_amount_that_is_not_an_integer_refuses_the_whole_commit(broker):
    """What a worker could never send (it sends ints) is still refused before any write."""
    _publish(broker)
    claim = broker.claim_task(JOB, "w1", 10, 60)
    before = _keys_and_values(broker)
    script, script_keys, args = broker._commit_call(JOB, claim.tid, claim.attempt, "w1", keys.chunk(JOB, "m:0"),
                                                    {"maps_done": 1}, [(keys.part(JOB, 0), "0", b"out")], "req1")
    args[6] = "1.5"  # the amount of maps_done
    with pytest.raises(redis.exceptions.ResponseError, match="amount 1.5 of maps_done is not an integer"):
        broker._scripts([(script, script_keys, args)])
    assert _keys_and_values(broker) == before


def test_a_commit_refused_for_memory_changes_nothing(broker):
    """Redis refuses a script for memory only at its first write, so a full Redis refuses
    the whole commit, never its second half."""
    _publish(broker)
    claim = broker.claim_task(JOB, "w1", 10, 60)
    before = _keys_and_values(broker)
    used = broker.memory().used
    broker.r.config_set("maxmemory", max(1, used - 4096))
    try:
        with pytest.raises(RedisFull):
            broker.commit_map(JOB, claim.tid, claim.attempt, "w1", {0: b"out" * 1000}, {"maps_done": 1},
                              {("g", "n"): 10**30})
        assert _keys_and_values(broker) == before
    finally:
        broker.r.config_set("maxmemory", 0)
    assert broker.commit_map(JOB, claim.tid, claim.attempt, "w1", {0: b"out"}, {"maps_done": 1},
                             {("g", "n"): 10**30}) is True
    assert _user_total(broker, "g", "n") == 10**30


def test_a_superseded_commit_changes_only_the_refusal_record(broker):
    """A zombie's commit: its outputs, counters and task state stay out; only the refusal is
    recorded (the refused count, an event, the attempt log, the answer for a resend)."""
    _publish(broker)
    zombie = broker.claim_task(JOB, "w1", 10, 60)
    assert broker.fail_attempt(JOB, "m:0", zombie.attempt, 4, "lost", "", kind="lost") == 1
    current = broker.claim_task(JOB, "w2", 10, 60)
    before = _keys_and_values(broker)
    assert broker.commit_map(JOB, "m:0", zombie.attempt, "w1", {0: b"zombie"}, {"maps_done": 1},
                             {("g", "n"): 10**30}) is False
    after = _keys_and_values(broker)
    recorded = {keys.stats(JOB), keys.events(JOB), keys.attempt_log(JOB)}
    changed = {k.decode() for k in after.keys() | before.keys() if after.get(k) != before.get(k)}
    assert changed - recorded == {k for k in changed if k.startswith(keys.reply(JOB, ""))}
    assert broker.stats(JOB) == {"refused": 1, "lost": 1, "retries": 1}
    assert broker.r.exists(keys.part(JOB, 0)) == 0
    assert broker.task(JOB, "m:0")["state"] == "running"
    assert broker.commit_map(JOB, "m:0", current.attempt, "w2", {0: b"good"}, {"maps_done": 1}) is True


def test_a_step_whose_output_is_missing_fails_loudly_instead_of_reading_nothing(broker):
    """A later step's map task reads a reduce output of the step before: every reduce task
    writes one when it commits, so an absent output is data lost, never an empty input."""
    broker.r.set(keys.out("prev", 0), b"\x90")
    with pytest.raises(InfraError, match=r"output r:1 of the step before .* is missing"):
        broker.add_step_tasks(JOB, "prev", False, {0: {"format": "pairs"}, 1: {"format": "pairs"}})


# -- end to end: the repro, on real workers -----------------------------------------

BIG = '''
from mrctl import Mapper, Reducer


class KeyMapper(Mapper):
    def map(self, line):
        yield int(line) % 64, int(line)


class BigReducer(Reducer):
    """Each key adds 2 * 10**18 to one counter: 64 keys pass 2**63 eight times over."""

    def reduce(self, key, values):
        self.increment_counter("big", "total", 2 * 10**18)
        return sum(values)
'''


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inline", "local", pytest.param("docker", marks=pytest.mark.docker)])
def test_counters_past_64_bits_in_a_two_step_job_are_exact(tmp_path, backend, request):
    if backend == "docker":
        request.getfixturevalue("clean_docker")
    (tmp_path / "big.py").write_text(BIG)
    numbers = list(range(1, 1001))
    (tmp_path / "nums.txt").write_text("".join(f"{n}\n" for n in numbers))
    (tmp_path / "big.yaml").write_text(
        "name: big\ninput: nums.txt\nmodule: big.py\nreducers: 8\nworkers: 2\nchunk_size: 400\n"
        f"backend: {backend}\nsteps:\n  - {{mapper: KeyMapper, reducer: BigReducer}}\n  - {{reducer: BigReducer}}\n")
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "mrctl", "run", str(tmp_path / "big.yaml"), "--json", "-o", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected: dict[str, int] = {}
    for n in numbers:
        expected[str(n % 64)] = expected.get(str(n % 64), 0) + n
    assert json.loads(out.read_text()) == dict(sorted(expected.items(), key=lambda kv: int(kv[0])))
    summary = json.loads(proc.stdout)
    assert summary["counters"] == {"big": {"total": 2 * len(expected) * 2 * 10**18}}
    assert summary["lost"] == summary["failed_attempts"] == 0


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("backend", ["inline", "local", pytest.param("docker", marks=pytest.mark.docker)])
def test_pagerank_with_a_fixed_point_past_64_bits_is_exact(tmp_path, backend, request):
    """The example's dangling total in units of 10**24 per rank (over 10**15 per dangling
    node): each iteration's counter passes 2**64, and the ranks still match a plain loop."""
    import references

    import mrctl

    if backend == "docker":
        request.getfixturevalue("clean_docker")
    out = tmp_path / "pagerank.json"
    result = mrctl.run(ROOT / "jobspecs" / "pagerank.yaml", backend=backend, output=str(out), workers=2,
                       params={"scale": 10**24})
    got = json.loads(out.read_text())
    expected = references.pagerank(ROOT / "jobspecs" / "data" / "debian-deps.tsv", 0.85, 10)
    assert got.keys() == expected.keys()
    assert max(abs(got[k] - expected[k]) / expected[k] for k in expected) < 1e-9
    dangling = sum(not t for t in references._graph(ROOT / "jobspecs" / "data" / "debian-deps.tsv").values())
    assert result.counters["pagerank"]["dangling_nodes"] == dangling
    assert result.counters["pagerank"]["dangling"] > 2**64


def test_amounts_with_leading_zeros_or_a_negative_zero_add_as_their_value(broker):
    """From a review: the check accepted '007' and '-0', which HINCRBY refuses: the script
    would have stopped after other counters were written. They add as 7 and 0."""
    _publish(broker)
    claim = broker.claim_task(JOB, "w1", 10, 60)
    script, script_keys, args = broker._commit_call(JOB, claim.tid, claim.attempt, "w1", keys.chunk(JOB, "m:0"),
                                                    {"maps_done": 1, keys.counter_field("g", "a"): 1,
                                                     keys.counter_field("g", "b"): 1}, [], "req2")
    args[8], args[10] = "007", "-0"
    assert broker._scripts([(script, script_keys, args)]) == [1]
    assert _user_total(broker, "g", "a") == 7 and _user_total(broker, "g", "b") == 0
