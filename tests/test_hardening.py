"""Issue 11's hardening, end to end: each test failed before its fix.

Expected outputs come from plain-Python computations written here, never from mrctl."""

from __future__ import annotations

import collections
import json

import pytest
from jobs import make_spec

from mrctl.broker.meta import JobMeta
from mrctl.errors import JobFailed
from mrctl.master.driver import run_job

MIXED = '''
from mrctl import Mapper, Reducer

KEYS = {"i": 1, "f": 1.0, "b": True, "s": "1", "z": 0, "zf": -0.0, "n": None, "l": ["1"], "t": [True]}


class MixedMapper(Mapper):
    def map(self, line):
        yield KEYS[line], 1


class SumReducer(Reducer):
    def reduce(self, key, values):
        return sum(values)
'''
LETTERS = ["i", "f", "b", "s", "z", "zf", "n", "l", "t"]


def _mixed_input(tmp_path):
    lines = [LETTERS[(i * 7) % len(LETTERS)] for i in range(120)]
    path = tmp_path / "mixed.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, lines


@pytest.mark.parametrize("backend,reducers,chunk_size", [
    ("inline", 1, 1 << 20), ("local", 3, 8), ("local", 1, 64), ("local", 4, 1 << 20)])
def test_keys_of_mixed_types_never_merge_whatever_r_chunk_size_and_backend(tmp_path, backend, reducers,
                                                                         chunk_size):
    path, lines = _mixed_input(tmp_path)
    values = {"i": 1, "f": 1.0, "b": True, "s": "1", "z": 0, "zf": -0.0, "n": None, "l": ("1",), "t": (True,)}
    expected = sorted((t.__name__, r, n) for (t, r), n in collections.Counter(
        (type(values[x]), repr(values[x])) for x in lines).items())
    spec = make_spec(tmp_path, MIXED, [path], mapper="MixedMapper", combiner="SumReducer",
                     output="out.jsonl", backend=backend, reducers=reducers, chunk_size=chunk_size, workers=2)
    run_job(spec)
    rows = [json.loads(line) for line in spec.output_path.read_text().splitlines()]
    got = sorted((type(r["key"]).__name__ if not isinstance(r["key"], list) else "tuple",
                  repr(tuple(r["key"]) if isinstance(r["key"], list) else r["key"]), r["value"]) for r in rows)
    assert got == expected and len(got) == len(LETTERS)


def test_json_output_refuses_keys_that_would_collide_and_writes_nothing(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("i\ns\ni\n")
    spec = make_spec(tmp_path, MIXED, [path], mapper="MixedMapper", output="out.json", backend="inline")
    with pytest.raises(JobFailed) as info:
        run_job(spec)
    message = str(info.value)
    assert "1 (int)" in message and "'1' (str)" in message and "jsonl" in message
    assert info.value.exit_code == 1 and not spec.output_path.exists()


# -- 11.1 and 11.7: outputs that would destroy or re-read input; values no run can use --------

def _mrctl(*args: str, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "mrctl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def _wordcount_spec(tmp_path, extra: str = "") -> str:
    from jobs import WORDCOUNT

    (tmp_path / "wc.py").write_text(WORDCOUNT)
    (tmp_path / "wc.yaml").write_text("name: wc\ninput: indir/\n"
                                      "job: {module: wc.py, mapper: WordMapper, reducer: SumReducer}\n"
                                      "backend: inline\n" + extra)
    (tmp_path / "indir").mkdir(exist_ok=True)
    (tmp_path / "indir" / "a.txt").write_text("the cat\nthe hat\n")
    return str(tmp_path / "wc.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("args,needle", [
    (["-i", "victim.txt", "-o", "victim.txt"], "is also an input file"),
    (["-i", "indir", "-o", "indir/out.json"], "is inside the input directory"),
    (["-i", "indir/*.txt", "-o", "indir/out.txt"], "matches the input pattern"),
    (["-o", "indir"], "is a directory"),
    (["-o", "victim.txt/out.json"], "is a file, not a directory"),
    (["--workers", "1000000"], "--workers: 1000000 is more than 256"),
    (["--reducers", str(10**9)], "--reducers: 1000000000 is more than 10000"),
    (["--task-timeout", "nan"], "finite number of seconds"),
    (["--task-timeout", "inf"], "finite number of seconds"),
    (["--redis-memory", "0"], "0, Redis's 'unlimited', is refused"),
])
def test_unusable_settings_are_refused_before_any_work_and_input_is_untouched(tmp_path, args, needle):
    spec = _wordcount_spec(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious words\n")
    proc = _mrctl("run", spec, *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert victim.read_text() == "precious words\n"
    assert sorted(p.name for p in (tmp_path / "indir").iterdir()) == ["a.txt"]


@pytest.mark.slow
def test_spec_values_out_of_bounds_name_file_and_line(tmp_path):
    for extra, needle in [("task_timeout: .nan\n", "wc.yaml:5: task_timeout: expected a finite number"),
                          ("reducers: 1000000000\n", "wc.yaml:5: reducers: 1000000000 is more than 10000")]:
        proc = _mrctl("validate", _wordcount_spec(tmp_path, extra), cwd=tmp_path)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr


@pytest.mark.slow
def test_a_hidden_output_inside_an_input_directory_is_allowed_and_not_read_back(tmp_path):
    spec = _wordcount_spec(tmp_path)
    for _ in range(2):
        proc = _mrctl("run", spec, "-o", "indir/.counts.json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads((tmp_path / "indir" / ".counts.json").read_text()) == {"cat": 1, "hat": 1, "the": 2}


# -- 11.3: user code that holds the GIL longer than a lease --------------------------------------

GIL_HOG = '''
from mrctl import Mapper, Reducer


class HogMapper(Mapper):
    def map(self, line):
        if line == "hog":
            sum(range({n}))  # one C call: the GIL is not released until it returns
        yield line, 1


class SumReducer(Reducer):
    def reduce(self, key, values):
        return sum(values)
'''


def _gil_iterations(seconds: float) -> int:
    """How many sum(range()) steps hold the GIL for about `seconds` on this machine."""
    import time

    started = time.perf_counter()
    sum(range(10**7))
    return int(10**7 * seconds / (time.perf_counter() - started))


@pytest.mark.slow
def test_a_mapper_holding_the_gil_longer_than_the_lease_is_not_declared_dead(tmp_path):
    from mrctl.master.driver import RunOptions

    path = tmp_path / "in.txt"
    path.write_text("a\nhog\nb\n")
    # three one-line chunks: "hog" is the worker's second task, so its job is loaded and every
    # beat uses the job's 3 s lease; the GIL is held for ~3.3 leases (a lease of margin: the
    # keeper's beats are a process of their own, but that process needs a core too)
    spec = make_spec(tmp_path, GIL_HOG.format(n=_gil_iterations(10.0)), [path], mapper="HogMapper",
                     workers=1, reducers=1, task_timeout=120, max_attempts=1, chunk_size=2)
    final = run_job(spec, RunOptions(lease_s=3.0))
    assert json.loads(spec.output_path.read_text()) == {"a": 1, "b": 1, "hog": 1}
    assert final.retries == 0 and final.lost == 0 and final.timeouts == 0


def test_task_timeout_still_ends_a_mapper_that_holds_the_gil(tmp_path):
    from mrctl.master.driver import RunOptions

    path = tmp_path / "in.txt"
    path.write_text("hog\n")
    spec = make_spec(tmp_path, GIL_HOG.format(n=10**13), [path], mapper="HogMapper",
                     workers=1, reducers=1, task_timeout=2, max_attempts=1)
    with pytest.raises(JobFailed) as info:
        run_job(spec, RunOptions(lease_s=2.0))
    assert "m:0" in str(info.value)
    assert info.value.snapshot.elapsed < 40 and not spec.output_path.exists()


def test_keeper_interrupts_at_task_timeout_and_reports_cancellation(broker):
    """The keeper's state machine on a real Redis, with its clock in the test's hands."""
    import multiprocessing

    from mrctl.worker.heartbeat import BeatState, HeartbeatKeeper, KeeperOptions

    job = "j1"
    broker.publish_job(job, JobMeta(state="running", reducers=1), {"m.py": ""})
    broker.add_map_task(job, "m:0", {"kind": "map"}, b"x\n")
    claim = broker.claim_task(job, "w1", lease_s=5, timeout_s=100)
    mine, theirs = multiprocessing.Pipe()
    keeper = HeartbeatKeeper(KeeperOptions(broker.url, "w1", worker_pid=0, signal_worker=False), broker, mine)
    keeper.update(BeatState(job, claim.tid, claim.attempt, user_code=True, lease_s=5, task_timeout=3), now=100.0)
    assert keeper.tick(101.0) is None and not theirs.poll()
    assert keeper.tick(103.5) == "timeout"
    assert json.loads(theirs.recv_bytes()) == ["timeout", "j1", "m:0", 1]
    assert keeper.tick(104.0) is None  # interrupted once; the kill needs signal_worker
    workers, beats, _ = broker.worker_rows()
    assert workers["w1"]["state"] == "mapping" and workers["w1"]["task"] == "m:0"


# -- 11.4: a CLAIM or COMMIT whose reply is lost, retried by the client ---------------------------

def _two_map_tasks(broker):
    broker.publish_job("J", JobMeta(state="running", reducers=1), {"m.py": ""})
    broker.add_map_task("J", "m:0", {"kind": "map"}, b"a\n")
    broker.add_map_task("J", "m:1", {"kind": "map"}, b"b\n")


def test_a_claim_whose_reply_is_lost_claims_the_same_task_once(broker, lossy):
    from mrctl.broker import keys

    via, proxy, shas = lossy
    _two_map_tasks(broker)
    via.claim_task("J", "w1", lease_s=30, timeout_s=300)
    broker.add_map_task("J", "m:2", {"kind": "map"}, b"c\n")
    proxy.drop_reply_of(shas["CLAIM"])
    claim = via.claim_task("J", "w1", lease_s=30, timeout_s=300)
    assert proxy.dropped == 1
    assert (claim.tid, claim.attempt, claim.data) == ("m:1", 1, b"b\n")
    # nothing orphaned: m:2 still waits in the queue, and only m:0 and m:1 hold a lease
    assert [t.decode() for t in broker.r.lrange(keys.queue("J"), 0, -1)] == ["m:2"]
    assert sorted(m.decode() for m in broker.r.zrange(keys.leases("J"), 0, -1)) == ["m:0@1", "m:1@1"]
    assert broker.task("J", "m:2")["state"] == "pending"


def test_a_commit_whose_reply_is_lost_is_reported_committed_not_refused(broker, lossy):
    via, proxy, shas = lossy
    _two_map_tasks(broker)
    claim = via.claim_task("J", "w1", lease_s=30, timeout_s=300)
    proxy.drop_reply_of(shas["COMMIT"])
    assert via.commit_map("J", claim.tid, claim.attempt, "w1", {0: b"blob"}, {"maps_done": 1}) is True
    assert proxy.dropped == 1
    stats = broker.stats("J")
    assert stats["maps_done"] == 1 and stats.get("refused", 0) == 0
    assert broker.committed_attempt("J", claim.tid) == claim.attempt


# -- 11.5: lost attempts are not failures --------------------------------------------------------

DIES_TWICE = '''
import os
from mrctl import Mapper, Reducer

MARKERS = {markers!r}


class DyingMapper(Mapper):
    def setup(self):
        done = len(os.listdir(MARKERS))
        if done < 2:  # the first two attempts kill their worker process, as `kill -9` would
            open(os.path.join(MARKERS, str(done)), "w").close()
            os._exit(1)

    def map(self, line):
        yield from ((w, 1) for w in line.split())


class SumReducer(Reducer):
    def reduce(self, key, values):
        return sum(values)
'''


@pytest.mark.slow
def test_workers_killed_under_a_task_do_not_use_up_max_attempts(tmp_path):
    from mrctl.observe.views import summary_dict, summary_lines

    markers = tmp_path / "markers"
    markers.mkdir()
    path = tmp_path / "in.txt"
    path.write_text("to be or not to be\n")
    spec = make_spec(tmp_path, DIES_TWICE.format(markers=str(markers)), [path], mapper="DyingMapper",
                     workers=1, reducers=1, max_attempts=1)
    final = run_job(spec)
    assert json.loads(spec.output_path.read_text()) == {"be": 2, "not": 1, "or": 1, "to": 2}
    assert final.lost == 2 and final.failed_attempts == 0 and final.failures == 0
    assert summary_dict(final)["failed_attempts"] == 0 and summary_dict(final)["lost"] == 2
    assert "failed attempts 0" in "\n".join(summary_lines(final))
    assert "lost attempts 2" in "\n".join(summary_lines(final))


# -- 11.7/11.8: a bad value in a big chunk gives a short, precise error -------------------------

BAD_VALUES = '''
from mrctl import Mapper, Reducer


class SetMapper(Mapper):
    def map(self, line):
        for word in line.split():
            yield word, ({{1, 2}} if word == "poison" else 1)


class LoudMapper(Mapper):
    def map(self, line):
        if "poison" in line:
            raise ValueError("bad value: " + "x" * 2_000_000)
        yield line, 1


class SumReducer(Reducer):
    def reduce(self, key, values):
        return sum(values)
'''


@pytest.mark.parametrize("backend", ["inline", "local"])
@pytest.mark.parametrize("mapper,needles", [
    ("SetMapper", ["the mapper emitted a set in the value {1, 2} of key 'poison'", "plain data"]),
    ("LoudMapper", ["ValueError: bad value: xxx", "characters left out", "line 2001"]),
])
def test_one_bad_value_in_a_big_chunk_gives_a_short_precise_error(tmp_path, backend, mapper, needles):
    path = tmp_path / "in.txt"
    words = " ".join(f"w{i}" for i in range(500))
    path.write_text("\n".join([words] * 2000 + ["a poison b"] + [words] * 2000) + "\n")  # ~7 MB
    spec = make_spec(tmp_path, BAD_VALUES.format(), [path], mapper=mapper, backend=backend, workers=1,
                     reducers=2, max_attempts=1, chunk_size=16 << 20)
    with pytest.raises(JobFailed) as info:
        run_job(spec)
    message = str(info.value)
    assert all(n in message for n in needles), message[:2000]
    assert len(message) < 12_000
    assert not spec.output_path.exists()


# -- 11.7: input files that change under a run, or whose names are not UTF-8 ------------------

@pytest.mark.slow
@pytest.mark.parametrize("change", ["vanish", "shrink"])
def test_an_input_file_that_changes_mid_run_fails_the_job_clearly(tmp_path, change):
    from jobs import SLOW

    from mrctl.errors import SpecError
    from mrctl.master.driver import RunOptions

    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("alpha beta\n" * 4000)  # ~44 kB: 11 map tasks of 4 kB before second.txt
    second.write_text("gamma delta\n" * 100)
    spec = make_spec(tmp_path, SLOW, [first, second], mapper="SlowMapper", workers=1, reducers=1,
                     chunk_size=4096)
    done = []

    def meddle(snap):
        if snap.phase == "map" and not done:
            done.append(1)
            second.unlink() if change == "vanish" else second.write_text("gamma\n")

    with pytest.raises(SpecError) as info:  # a window of 2 chunks: second.txt is read late
        run_job(spec, RunOptions(window_bytes=8192), on_snapshot=meddle)
    expected = "vanished during the run" if change == "vanish" else "changed during the run"
    assert f"input file {second} {expected}" in str(info.value) and info.value.exit_code == 2
    assert not spec.output_path.exists()


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_a_file_name_that_is_not_utf8_works_on_every_backend(tmp_path, backend):
    import os

    from jobs import WORDCOUNT

    name = os.fsdecode(b"caf\xe9-latin1.txt")  # a Latin-1 file name, as old archives have
    path = tmp_path / name
    path.write_text("the cafe and the bar\n")
    spec = make_spec(tmp_path, WORDCOUNT, [path], backend=backend, workers=1)
    run_job(spec)
    assert json.loads(spec.output_path.read_text()) == {"and": 1, "bar": 1, "cafe": 1, "the": 2}


# -- the heartbeat process: found by an adversarial review --------------------------------------

KEEPER_KILLER = '''
import os, signal, time
from pathlib import Path
from mrctl import Mapper, Reducer

MARKERS = {markers!r}


def _keeper_pid():
    # the keeper is a child of the worker's main process, which forks the run's process this
    # code runs in (mrctl.worker.runs): its sibling, forked from the same worker (same command)
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if entry.name.isdigit() and ppid == os.getppid() and entry.name != str(os.getpid()) and b"mrctl.worker" in cmd:
            return int(entry.name)


class KeeperKillingMapper(Mapper):
    def setup(self):
        marker = os.path.join(MARKERS, "done")
        if not os.path.exists(marker):
            open(marker, "w").close()
            if {fork}:  # a forked child holds the worker's end of the keeper's pipe
                if os.fork() == 0:
                    time.sleep(3)
                    os._exit(0)
                os.kill(os.getpid(), signal.SIGKILL)  # the worker dies under its task
            os.kill(_keeper_pid(), signal.SIGKILL)  # the heartbeat process dies
            time.sleep(0.5)

    def map(self, line):
        yield from ((w, 1) for w in line.split())


class SumReducer(Reducer):
    def reduce(self, key, values):
        return sum(values)
'''


@pytest.mark.slow
@pytest.mark.parametrize("fork", [False, True], ids=["keeper-killed", "worker-killed-child-holds-pipe"])
def test_a_dead_keeper_or_worker_is_an_infrastructure_loss_not_a_task_failure(tmp_path, fork):
    """The keeper killed under a task: the worker must not charge the task (it did: a
    BrokenPipeError counted against max_attempts) but exit so that a fresh worker replaces it.
    The worker killed while a forked child holds its pipe: the keeper must still end (it beat
    on, renewing the dead attempt's lease). The autouse fixture checks no keeper is left."""
    from mrctl.master.driver import RunOptions

    markers = tmp_path / "markers"
    markers.mkdir()
    path = tmp_path / "in.txt"
    path.write_text("to be or not to be\n")
    spec = make_spec(tmp_path, KEEPER_KILLER.format(markers=str(markers), fork=fork), [path],
                     mapper="KeeperKillingMapper", workers=1, reducers=1, max_attempts=1)
    final = run_job(spec, RunOptions(lease_s=2.0))
    assert json.loads(spec.output_path.read_text()) == {"be": 2, "not": 1, "or": 1, "to": 2}
    # the worker killed under its task loses it; with only its keeper killed, the task may
    # still commit (fenced: refused had its lease run out), and the worker then leaves
    assert final.failed_attempts == 0 and (final.lost == 1 if fork else final.lost <= 1)
    assert any(e.kind == "replaced" for e in final.events), final.events


def test_a_forked_keepers_handle_waits_kills_and_reaps_as_popen_does():
    """What the worker asks of its keeper's handle when a keeper hangs (stuck on a Redis that
    does not answer): a bounded wait times out, kill and an unbounded wait reap it (-9), and a
    pid reaped elsewhere (mrctl.worker.runs waits on all its children) is never signalled."""
    import os
    import signal
    import subprocess
    import time

    from mrctl.worker.heartbeat import ForkedKeeper

    pid = os.fork()
    if pid == 0:  # a keeper that hangs
        time.sleep(60)
        os._exit(0)
    keeper = ForkedKeeper(pid)
    assert keeper.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        keeper.wait(timeout=0.2)
    keeper.kill()
    assert keeper.wait() == -signal.SIGKILL and keeper.poll() == -signal.SIGKILL
    keeper.kill()  # reaped: no signal to a pid that may be someone else's now
    other = os.fork()
    if other == 0:
        os._exit(5)
    os.waitpid(other, 0)  # reaped by someone else, as runs._wait does
    elsewhere = ForkedKeeper(other)
    assert elsewhere.poll() == 0 and elsewhere.wait(timeout=1) == 0 and elsewhere.wait() == 0
    elsewhere.kill()


def test_a_replayed_claim_of_an_attempt_that_ended_gets_nothing(broker):
    from mrctl.broker import keys

    _two_map_tasks(broker)
    claim_keys = [keys.queue("J"), keys.leases("J"), keys.deadlines("J"), keys.meta("J"), keys.claimed("J", "w1"),
                  keys.attempt_log("J")]
    args = [keys.task_prefix("J"), "w1", 30_000, 300_000, keys.chunk_prefix("J"), keys.part_prefix("J"),
            keys.REPLY_TTL_MS, 1, 0, "replayed"]
    first = broker._claim(keys=claim_keys, args=args)
    assert first[0][0] == b"m:0" and broker._claim(keys=claim_keys, args=args)[0][0] == b"m:0"  # replay: same
    assert broker.fail_attempt("J", "m:0", 1, 4, "lease expired", "", "lost") == 1  # reaped meanwhile
    assert broker._claim(keys=claim_keys, args=args) is None  # a replay no longer hands it out
    assert broker.claim_task("J", "w2", 30, 300).tid == "m:1"  # nothing else disturbed


# -- 11.6: replacement during start-up, and crash loops -----------------------------------------

def test_workers_dying_before_any_work_are_a_crash_loop_that_fails_fast(tmp_path, monkeypatch):
    """Every worker process dies as it starts (a sitecustomize that exits when it sees a worker's
    environment): replaced max_worker_restarts times, then the job fails at once, exit 3."""
    import time

    from jobs import WORDCOUNT

    from mrctl.errors import InfraError

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os\nif os.environ.get('MRCTL_WORKER_NAME'):\n    os._exit(7)\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    path = tmp_path / "in.txt"
    path.write_text("a b c\n")
    spec = make_spec(tmp_path, WORDCOUNT, [path], workers=2, max_worker_restarts=2)
    started = time.monotonic()
    with pytest.raises(InfraError) as info:
        run_job(spec)
    message = str(info.value)
    assert "workers keep dying before doing any work (3 within 60s, more than max_worker_restarts 2)" \
        in message and "exited with code 7" in message
    assert info.value.exit_code == 3 and time.monotonic() - started < 30
    assert not spec.output_path.exists()


def test_queueing_a_task_whose_reply_is_lost_queues_it_once(broker, lossy):
    """Master side (found by the review): a retried add_map_task queued the task twice, so two
    attempts of it ran at once. Now the second call finds the task and changes nothing."""
    from mrctl.broker import keys

    via, proxy, shas = lossy
    broker.publish_job("J", JobMeta(state="running", reducers=2), {"m.py": ""})
    proxy.drop_reply_of(shas["ADD_MAP_TASKS"])
    via.add_map_task("J", "m:0", {"kind": "map", "index": 0}, b"a\n")
    assert proxy.dropped == 1
    assert [t.decode() for t in broker.r.lrange(keys.queue("J"), 0, -1)] == ["m:0"]
    assert broker.task("J", "m:0")["state"] == "pending" and broker.r.get(keys.chunk("J", "m:0")) == b"a\n"
    via.add_reduce_tasks("J", range(2))
    via.add_reduce_tasks("J", range(2))  # a second call, as a retry would make: nothing changes
    assert [t.decode() for t in broker.r.lrange(keys.queue("J"), 0, -1)] == ["m:0", "r:0", "r:1"]
