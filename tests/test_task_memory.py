"""Issue 23.2 and 23.6: what Redis keeps per task is bounded, and zombies of ended steps count.

A finished task keeps 4 bytes (the attempt that committed it), claims and commits leave no
memo per request (one claim memo per worker), and tiny tasks are fed by count as well as by
bytes: 100,000 one-line tasks run through a 16 MiB Redis. A late commit from a step that has
ended is refused and shows in the run's refused late commits. (A real redis-server, real
workers.)
"""

from __future__ import annotations

import collections
import json
import random
import subprocess
import sys

import pytest
from conftest import corpus_files

from mrctl.broker import ClaimRequest, MapCommit, keys
from mrctl.broker.meta import JobMeta

JOB = "j1"
LONG_PATH = "/home/someone/a/rather/long/path/to/the/inputs/of/this/job/" + "x" * 200 + ".txt"


def _job_keys(broker, job: str, kind: str) -> list[bytes]:
    return list(broker.r.scan_iter(match=f"{keys.job_prefix(job)}{kind}*", count=1000))


def test_finished_tasks_keep_four_bytes_each_and_no_memo_per_request(broker):
    n = 3000
    broker.publish_job(JOB, JobMeta(state="running"), {"job.py": ""})
    for start in range(0, n, 500):
        broker.add_map_tasks(JOB, [(f"m:{i}", {"kind": "map", "index": i, "file": LONG_PATH, "first_line": i + 1},
                                    b"word\n") for i in range(start, start + 500)])
    committed, workers = 0, ("w1", "w2")
    while committed < n:
        for worker in workers:
            claims = broker.claim_tasks(JOB, ClaimRequest(worker, 30, 300, max_tasks=64, max_bytes=1 << 20))
            oks, _ = broker.commit_maps_then_claim(
                JOB, worker, [MapCommit(c.tid, c.attempt, {0: b"blob"}, {"maps_done": 1}) for c in claims])
            committed += sum(oks)
    assert broker.stats(JOB)["maps_done"] == n
    assert _job_keys(broker, JOB, "task:") == []  # no record of a finished task left but its attempt
    assert broker.r.strlen(keys.done(JOB, "m")) <= 4 * n
    assert broker.committed_attempts(JOB, ["m:0", f"m:{n - 1}"]) == {"m:0": 1, f"m:{n - 1}": 1}
    assert _job_keys(broker, JOB, "reply:") == []  # no memo per claim or commit
    assert sorted(_job_keys(broker, JOB, "claimed:")) == sorted(keys.claimed(JOB, w).encode() for w in workers)
    # a finished task cannot be queued again by a resent add (its record is gone, its attempt is not)
    broker.add_map_task(JOB, "m:5", {"kind": "map", "index": 5}, b"again\n")
    assert broker.r.llen(keys.queue(JOB)) == 0 and not broker.r.exists(keys.chunk(JOB, "m:5"))


def test_a_zombie_of_an_ended_step_is_refused_and_counted_for_the_run(broker):
    run = "20261206-000000-abcd"
    step1, step2 = keys.step_job(run, 1), keys.step_job(run, 2)
    broker.publish_job(step1, JobMeta(state="running"), {"job.py": ""})
    broker.add_map_task(step1, "m:0", {"kind": "map", "index": 0}, b"a\n")
    zombie = broker.claim_task(step1, "w1", 30, 300)
    assert broker.fail_attempt(step1, "m:0", zombie.attempt, 4, "lease expired", "", kind="lost") == 1
    current = broker.claim_task(step1, "w2", 30, 300)
    assert broker.commit_map(step1, "m:0", current.attempt, "w2", {0: b"good"}, {"maps_done": 1}) is True
    broker.drop_job(step1)  # step 1 is over: step 2 runs
    broker.publish_job(step2, JobMeta(state="running"), {"job.py": ""})
    assert broker.heartbeat("w1", {}, step1, "m:0", zombie.attempt, 30) == "cancelled"  # stop it
    before = {k for k in broker.r.scan_iter(count=1000)}
    assert broker.commit_map(step1, "m:0", zombie.attempt, "w1", {0: b"zombie"}, {"maps_done": 1}) is False
    assert broker.late_refused(run) == 1
    # nothing of step 1 written back: only the run's count of late refusals (and the answer
    # for a resend, under the run too) is new
    new = {k.decode() for k in broker.r.scan_iter(count=1000)} - {k.decode() for k in before}
    assert keys.late(run) in new and all(k.startswith(keys.job_prefix(run)) for k in new), new


def test_the_step_job_id_is_pinned():
    assert keys.step_job("R", 3) == "R.s3" and keys.run_of("R.s3") == "R" and keys.run_of("R") == "R"
    assert keys.done("J", "m") == "mrctl:J:done:m" and keys.late("R") == "mrctl:R:late"
    assert keys.claimed("J", "w-1") == "mrctl:J:claimed:w-1"


@pytest.mark.slow
def test_a_hundred_thousand_one_line_tasks_run_through_a_16_mib_redis(tmp_path):
    """The issue's case: 30,000 one-line tasks filled a 16 MiB Redis; 100,000 now run, exact."""
    words = [w for path in corpus_files()[:2] for w in path.read_text(encoding="utf-8").split()]
    rng = random.Random(23)
    lines = [rng.choice(words) for _ in range(100_000)]
    (tmp_path / "lines.txt").write_text("".join(f"{w}\n" for w in lines), encoding="utf-8")
    (tmp_path / "job.py").write_text(
        "from mrctl import Mapper, Reducer\n\n\nclass Words(Mapper):\n    def map(self, line):\n"
        "        for w in line.split():\n            yield w, 1\n\n\n"
        "class Sum(Reducer):\n    def reduce(self, key, values):\n        return sum(values)\n")
    (tmp_path / "tiny.yaml").write_text("name: tiny\ninput: lines.txt\njob: {module: job.py, mapper: Words, "
                                        "reducer: Sum}\nreducers: 4\nchunk_size: 1\n")
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "mrctl", "run", str(tmp_path / "tiny.yaml"), "--backend", "local",
                           "--workers", "2", "--redis-memory", "16MiB", "--json", "-o", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["map"]["total"] == summary["map"]["done"] == len(lines)
    expected = collections.Counter(w for line in lines for w in line.split())
    assert json.loads(out.read_text(encoding="utf-8")) == dict(expected)
    assert 0 < summary["redis_peak_bytes"] <= 16 << 20


def test_a_commit_of_a_high_attempt_is_recorded_exactly_and_known_when_resent(broker):
    """From a review: a 2-byte record would wrap past attempt 65,535 (done read as 0)."""
    broker.publish_job(JOB, JobMeta(state="running"), {"job.py": ""})
    broker.add_map_task(JOB, "m:70000", {"kind": "map", "index": 70000}, b"a\n")
    broker.r.hset(keys.task(JOB, "m:70000"), "attempt", 70_000)
    claim = broker.claim_task(JOB, "w1", 30, 300)
    commit = MapCommit(claim.tid, claim.attempt, {0: b"x"}, {"maps_done": 1})
    assert broker.commit_maps_then_claim(JOB, "w1", [commit])[0] == [True]
    assert broker.committed_attempt(JOB, "m:70000") == 70_001
    assert broker.commit_maps_then_claim(JOB, "w1", [commit])[0] == [True]  # resent: same answer
    assert broker.stats(JOB)["maps_done"] == 1 and not broker.r.exists(keys.late(JOB))


def test_a_late_commit_resent_is_counted_once(broker):
    run = "20261206-000000-beef"
    step1 = keys.step_job(run, 1)
    broker.publish_job(step1, JobMeta(state="running"), {"job.py": ""})
    broker.add_map_task(step1, "m:0", {"kind": "map", "index": 0}, b"a\n")
    claim = broker.claim_task(step1, "w1", 30, 300)
    broker.drop_job(step1)
    late = MapCommit(claim.tid, claim.attempt, {0: b"x"}, {"maps_done": 1})
    for _ in range(3):  # a reply lost twice: the same request three times
        assert broker.commit_maps_then_claim(step1, "w1", [late])[0] == [False]
    assert broker.late_refused(run) == 1
