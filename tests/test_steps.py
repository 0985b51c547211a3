"""Multi-step and iterative jobs: the `steps:` spec, the order steps run in, intermediate data
that stays in Redis, and fault tolerance (retries, backups, chaos) in every step.

Expected outputs are computed here in plain Python from the same inputs.
"""

from __future__ import annotations

import collections
import json
import threading
import time

import pytest
from conftest import ROOT, corpus_files, word_counts, words_by_count
from jobs import write_steps_spec

from mrctl.broker import Broker, keys
from mrctl.broker.meta import JobMeta
from mrctl.errors import SpecError
from mrctl.io.output import write_output
from mrctl.master.chaos import ChaosPlan
from mrctl.master.driver import RunOptions, run_job
from mrctl.master.loop import Master
from mrctl.spec.jobspec import Overrides, load_spec
from mrctl.spec.steps import StepGroup, StepSpec, Until, unroll
from mrctl.worker.loop import Worker, WorkerOptions

TWO_STEPS = """
steps:
  - {name: count, mapper: WordMapper, reducer: SumReducer, combiner: SumReducer}
  - {name: by_count, mapper: ByCount, reducer: SortedWords, reducers: 3}
"""


def _texts(tmp_path, files: int = 3, lines: int = 300):
    source = corpus_files()[0].read_text(encoding="utf-8").splitlines()
    paths = []
    for i in range(files):
        p = tmp_path / f"in{i}.txt"
        p.write_text("\n".join(source[i * lines:(i + 1) * lines]) + "\n", encoding="utf-8")
        paths.append(p)
    return paths


# -- the spec ----------------------------------------------------------------------------


def test_steps_spec_reads_groups_repeat_and_until(tmp_path):
    spec = load_spec(write_steps_spec(tmp_path, """
params: {rounds: 3, limit: 2}
reducers: 2
steps:
  - {mapper: WordMapper, reducer: SumReducer}
  - repeat: {param: rounds}
    until: {counter: [halve, big], below: 1}
    steps:
      - {name: halve, mapper: Halve, params: {extra: 1}}
      - {reducer: SumReducer, sort_values: true}
""", [tmp_path / "job.py"]), Overrides(params=(("rounds", 5),)))
    first, group = spec.program
    assert first.steps == (StepSpec("step1", tmp_path / "job.py", "WordMapper", "SumReducer", None, 2, False, {}),)
    halve, total = group.steps
    assert (halve.name, halve.mapper, halve.reducer, halve.reducers) == ("halve", "Halve", None, 0)
    assert halve.params == {"extra": 1}
    assert (total.name, total.mapper, total.reducer, total.reducers) == ("step3", None, "SumReducer", 2)
    assert total.sort_values
    assert group.times(spec.params) == 5 and group.until == Until("halve", "big", 1)


@pytest.mark.parametrize(("body", "message"), [
    ("job: {module: job.py, mapper: WordMapper, reducer: SumReducer}\n" + TWO_STEPS,
     "give either job: (one MapReduce step) or steps: (a list of them)"),
    ("steps: []\n", "steps: expected a non-empty list of steps"),
    ("steps:\n  - {reducer: SumReducer}\n", ":6: steps[0].mapper: missing (required)"),
    ("steps:\n  - {mapper: WordMapper, reducer: SumReducer, mapers: 2}\n", ":6: steps[0].mapers: unknown key"),
    ("steps:\n  - {mapper: WordMapper, reducer: Nope}\n", "steps[0].reducer: no class 'Nope' in job.py"),
    ("steps:\n  - {mapper: WordMapper, reducer: SumReducer}\n  - {mapper: SumReducer, reducer: SumReducer}\n",
     ":7: steps[1].mapper: SumReducer in job.py is a Reducer"),
    ("steps:\n  - {mapper: WordMapper, reducer: SumReducer, repeat: 0}\n",
     "steps[0].repeat: expected an integer from 1"),
    ("steps:\n  - {mapper: WordMapper, reducer: SumReducer, until: {counter: x, below: 1}}\n",
     "steps[0].until: expected {counter: [GROUP, NAME], below: NUMBER}"),
    ("steps:\n  - steps: [{mapper: WordMapper, reducer: SumReducer, repeat: 2}]\n",
     "steps[0].steps: a repeated group holds plain steps"),
    ("steps:\n  - {mapper: WordMapper}\n", "a last step without a reducer (map-only) keeps every pair"),
    ("steps:\n  - {mapper: WordMapper, reducer: SumReducer, module: other.py}\n", "steps[0].module: no such file"),
])
def test_steps_spec_mistakes_name_the_step_and_line(tmp_path, body, message):
    with pytest.raises(SpecError) as err:
        load_spec(write_steps_spec(tmp_path, body, [tmp_path / "job.py"]))
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "steps.yaml"))


def test_repeat_from_a_param_must_be_a_count(tmp_path):
    path = write_steps_spec(tmp_path, "params: {rounds: many, limit: 1}\nsteps:\n"
                            "  - {mapper: WordMapper, reducer: SumReducer}\n"
                            "  - {mapper: Halve, reducer: SumReducer, repeat: {param: rounds}}\n",
                            [tmp_path / "job.py"])
    with pytest.raises(SpecError, match=r"steps.yaml:6: steps: repeat: the param 'rounds' must be an integer from 1"):
        load_spec(path)
    assert load_spec(path, Overrides(params=(("rounds", 3),))).program[1].times({"rounds": 3}) == 3


def test_validate_lists_the_steps(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "mrctl", "validate", str(ROOT / "jobspecs" / "pagerank.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-3:] == [
        "  step 1 graph: ParseAdjacency -> BuildNode, 4 reducers",
        "  step 2 iterate: SpreadRank -> SumRank, 4 reducers; repeat 10 (param iterations), "
        "until pagerank.changed < 1",
        "  step 3 ranks: (identity) -> RankOnly, 4 reducers"]


def test_unroll_repeats_groups_and_stops_when_until_is_met():
    a, b, c = (StepSpec(n, None, "M", "R") for n in "abc")  # type: ignore[arg-type]
    program = (StepGroup((a,)), StepGroup((b, c), repeat=4, until=Until("g", "left", 1)), StepGroup((a,)))
    asked: list[int] = []
    left = iter([5, 2, 0])  # the counter after iterations 1, 2, 3

    def last(n):
        asked.append(n)
        return {("g", "left"): next(left)}

    order = [(s.number, s.planned, s.spec.name, s.iteration, s.iterations) for s in unroll(program, {}, last)]
    assert order == [(1, 10, "a", 1, 1), (2, 10, "b", 1, 4), (3, 10, "c", 1, 4), (4, 10, "b", 2, 4),
                     (5, 10, "c", 2, 4), (6, 10, "b", 3, 4), (7, 10, "c", 3, 4), (8, 10, "a", 1, 1)]
    assert asked == [2, 2, 2]


# -- running -------------------------------------------------------------------------------


def test_intermediate_data_stays_in_redis_and_finished_steps_leave_no_keys(tmp_path, redis_url, broker):
    """Master + burst workers in threads: step 2 reads step 1's pairs where they are; only the
    last step's output is written; step 1's keys are gone once step 2 took its data."""
    inputs = _texts(tmp_path)
    spec = load_spec(write_steps_spec(tmp_path, TWO_STEPS + "chunk_size: 4KiB\nreducers: 4\nworkers: 2\n", inputs))
    master = Master(spec, broker, "multi", window=256)
    master.start()
    options = WorkerOptions(burst=True, interrupt_main=False, poll_s=0.01)
    workers = [Worker(Broker(redis_url, retries=0), name=f"w-{i}", options=options) for i in range(2)]
    threads = [threading.Thread(target=w.run, name=w.name) for w in workers]
    for t in threads:
        t.start()
    seen_step_two = False
    try:
        deadline = time.monotonic() + 60
        while not master.tick():
            assert time.monotonic() < deadline, f"stuck in {master.step.label()} {master.phase}"
            if master.step.number == 2:
                seen_step_two = True
                assert not list(broker.r.scan_iter(match=f"{keys.job_prefix('multi.s1')}*"))
            time.sleep(0.01)
        write_output(spec.output_path, master.output_pairs(), spec.output_format)
        master.finish("succeeded")
        for t in threads:
            t.join(10)
    finally:
        master.close()  # its spill directory, as the runner does
        for w in workers:
            w.stop()
        for t in threads:
            t.join(5)
    assert seen_step_two and master.job == "multi.s2"
    assert json.loads(spec.output_path.read_text()) == words_by_count(inputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["job.py", "steps.yaml", "out.json"] +
                                                                [p.name for p in inputs])
    snap = master.snapshot()
    assert (snap.step, snap.steps, snap.step_name) == (2, 2, "by_count")
    assert [label for label, _ in snap.step_seconds] == ["step 1/2 (count)", "step 2/2 (by_count)"]
    assert snap.records_in == sum(len(p.read_text().splitlines()) for p in inputs)


def _halvings(counts: collections.Counter, limit: int, most: int) -> tuple[dict[str, int], int]:
    """The iterative job by hand: halve every count until none is >= limit (at most `most` times)."""
    done = 0
    while done < most:
        counts = collections.Counter({w: n // 2 for w, n in counts.items()})
        done += 1
        if not any(n >= limit for n in counts.values()):
            break
    return dict(counts), done


ITERATE = """
params: {limit: 3, rounds: 12}
reducers: 3
steps:
  - {name: count, mapper: WordMapper, reducer: SumReducer, combiner: SumReducer}
  - repeat: {param: rounds}
    until: {counter: [halve, big], below: 1}
    steps:
      - {name: halve, mapper: Halve}
      - {name: regroup, reducer: SumReducer}
  - {name: last, mapper: ByCount, reducer: SortedWords}
"""


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_iteration_stops_when_the_counter_says_and_steps_see_counters(tmp_path, backend):
    inputs = _texts(tmp_path, files=2, lines=150)
    expected, iterations = _halvings(word_counts(inputs), 3, 12)
    assert 2 < iterations < 12  # the data makes `until` end the loop early
    spec = load_spec(write_steps_spec(tmp_path, ITERATE, inputs),
                     Overrides(backend=backend, workers=2))
    final = run_job(spec)
    found: dict[int, list[str]] = collections.defaultdict(list)
    for word, n in expected.items():
        found[n].append(word)
    assert json.loads(spec.output_path.read_text()) == {str(n): sorted(w) for n, w in found.items()}
    assert len(final.step_seconds) == 1 + 2 * iterations + 1
    assert final.steps == 1 + 2 * 12 + 1  # planned, had `until` not ended it


def test_a_later_step_knows_its_place_and_the_counters_before_it(tmp_path):
    inputs = _texts(tmp_path, files=1, lines=80)
    body = """
params: {limit: 1000000}
steps:
  - {name: count, mapper: WordMapper, reducer: SumReducer}
  - {name: halve, mapper: Halve, repeat: 2}
  - {name: report, reducer: Context, reducers: 2}
"""
    spec = load_spec(write_steps_spec(tmp_path, body, inputs), Overrides(backend="local", workers=2))
    run_job(spec)
    got = json.loads(spec.output_path.read_text())
    assert {word: n // 4 for word, n in word_counts(inputs).items()} == {w: v[-1] for w, v in got.items()}
    for step, name, iteration, previous, before, _ in got.values():
        assert (step, name, iteration) == (4, "report", 1)
        assert previous == [[["halve", "big"], 0]]  # the step just before (halve, iteration 2)
        assert before == [[["halve", "big"], 0]]  # every step before, summed


def test_a_retry_and_a_speculative_backup_in_a_later_step(tmp_path):
    inputs = _texts(tmp_path)
    body = """
speculative: true
steps:
  - {name: count, mapper: WordMapper, reducer: SumReducer, combiner: SumReducer, reducers: 4}
  - {name: flaky, mapper: FlakyByCount, reducer: SortedWords, reducers: 4}
  - {name: straggle, mapper: StragglingByCount, reducer: SortedWords}
"""
    # step 3 maps step 2's output, keyed by count; step 3 regroups it by the words' list
    spec = load_spec(write_steps_spec(tmp_path, body, inputs, output="out.jsonl"),
                     Overrides(backend="local", workers=2))
    final = run_job(spec)
    got = {}
    for line in spec.output_path.read_text().splitlines():
        pair = json.loads(line)
        got[json.dumps(pair["key"])] = pair["value"]
    assert got == {json.dumps(words): [int(n)] for n, words in words_by_count(inputs).items()}
    # (speculation is on in every step: a map attempt of steps 1-2 stalled past 1 s on a loaded
    # machine is backed up too, rightly)
    assert final.retries >= 1 and final.backups >= 1, final
    kinds = {(e.kind, e.message.split()[0]) for e in final.events}
    assert ("speculative", "m:1") in kinds, final.events
    label, seconds = final.step_seconds[-1]
    assert "straggle" in label and seconds < 25, final.step_seconds  # the backup won; the straggler sleeps 30 s


@pytest.mark.slow
def test_chaos_kills_workers_across_steps_and_the_output_is_exact(tmp_path):
    inputs = _texts(tmp_path, files=4)
    body = """
chunk_size: 2KiB
max_worker_restarts: 20
steps:
  - {name: count, mapper: SlowWordMapper, reducer: SumReducer, combiner: SumReducer, reducers: 8}
  - {name: by_count, mapper: SlowByCount, reducer: SortedWords, reducers: 3}
"""
    spec = load_spec(write_steps_spec(tmp_path, body.replace("max_worker_restarts: 20", "max_worker_restarts: 100"),
                                      inputs), Overrides(backend="local", workers=3))
    kills_in: dict[int, set[int]] = collections.defaultdict(set)  # step -> kill counts seen in it

    def watch(snap) -> None:
        kills_in[snap.step].add(snap.killed)

    final = run_job(spec, RunOptions(chaos=ChaosPlan(kills=100, every_s=0.4, seed=3)), on_snapshot=watch)
    assert json.loads(spec.output_path.read_text()) == words_by_count(inputs)
    assert final.killed >= 3 and final.lost >= 2, final
    assert len(kills_in[1]) > 1 and len(kills_in[2]) > 1, kills_in  # workers died in both steps


# -- what the adversarial review of steps found ---------------------------------------------


def test_the_first_step_cannot_repeat(tmp_path):
    with pytest.raises(SpecError, match=r"steps.yaml:6: steps\[0\]: the first step reads the input"):
        load_spec(write_steps_spec(tmp_path, "steps:\n  - {mapper: WordMapper, reducer: SumReducer, repeat: 2}\n",
                                   [tmp_path / "job.py"]))


ORDER = """
reducers: 3
steps:
  - {name: count, mapper: WordMapper, reducer: SumReducer, combiner: SumReducer}
  - {name: first, mapper: ByCount, reducer: FirstSeen}
  - {name: tag, mapper: Tag}
"""


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_value_and_pair_order_of_later_steps_is_the_partitions_on_every_backend(tmp_path, backend):
    """A later step's map task i reads output i of the step before: a reducer taking the first
    value, and a map-only last step, see pairs partition by partition (crc32 of the key mod R),
    key order within one — on every backend alike."""
    import zlib

    from jobs import ORDERED

    inputs = _texts(tmp_path, files=2, lines=120)
    spec = load_spec(write_steps_spec(tmp_path, ORDER, inputs, source=ORDERED, output="out.jsonl"),
                     Overrides(backend=backend, workers=2))
    run_job(spec)
    counts = word_counts(inputs)
    first: dict[int, str] = {}  # step 2: count -> the first word seen, partition by partition
    for p in range(3):
        for word in sorted(w for w in counts if zlib.crc32(w.encode()) % 3 == p):
            first.setdefault(counts[word], word)
    by_part: list[list[tuple[str, int]]] = [[] for _ in range(3)]  # step 2's reduce outputs
    for n in sorted(first):
        by_part[_partition(n)].append((first[n], n))
    expected = [pair for part in by_part for pair in part]
    got = [(p["key"], p["value"]) for p in map(json.loads, spec.output_path.read_text().splitlines())]
    assert got == expected


def _partition(key: int, partitions: int = 3) -> int:
    """The default partitioner for an int key, written out: crc32 of its msgpack bytes, mod R."""
    import zlib

    import msgpack

    return zlib.crc32(msgpack.packb(key)) % partitions


@pytest.mark.slow
def test_bad_records_of_later_steps_count_toward_one_max_on_every_backend(tmp_path):
    from jobs import ORDERED

    from mrctl.errors import JobFailed

    inputs = _texts(tmp_path, files=2, lines=120)
    counts = word_counts(inputs)
    ones = sum(1 for n in counts.values() if n == 1)
    body = ("params: {bad: 1}\nsteps:\n  - {mapper: WordMapper, reducer: SumReducer}\n"
            "  - {mapper: PickyByCount, reducer: SortedWords}\n")
    for backend in ("inline", "local"):
        for limit, fails in ((ones, False), (ones - 1, True)):
            path = write_steps_spec(tmp_path, body + f"bad_records: {{policy: skip, max: {limit}}}\n", inputs,
                                    source=ORDERED)
            spec = load_spec(path, Overrides(backend=backend, workers=2))
            if fails:
                with pytest.raises(JobFailed, match=f"{ones} records? skipped"):
                    run_job(spec)
                continue
            final = run_job(spec)
            assert final.bad_records == ones
            expected = {n: w for n, w in words_by_count(inputs).items() if n != "1"}
            assert json.loads(spec.output_path.read_text()) == expected


def test_a_param_flag_wins_over_a_steps_own_params(tmp_path):
    body = "params: {limit: 1}\nsteps:\n  - {mapper: WordMapper, reducer: SumReducer}\n" \
           "  - {mapper: Halve, reducer: SumReducer, params: {limit: 5, other: 2}}\n"
    path = write_steps_spec(tmp_path, body, [tmp_path / "job.py"])
    assert load_spec(path).program[1].steps[0].params == {"limit": 5, "other": 2}
    assert load_spec(path, Overrides(params=(("limit", 9),))).program[1].steps[0].params == {"other": 2}


def test_a_steps_reducers_zero_is_map_only_and_capped(tmp_path):
    body = ("steps:\n  - {mapper: WordMapper, reducer: SumReducer}\n"
            "  - {mapper: ByCount, reducer: SortedWords, reducers: 0}\n")
    spec = load_spec(write_steps_spec(tmp_path, body, [tmp_path / "job.py"], output="out.jsonl"))
    assert spec.program[1].steps[0].reducers == 0
    with pytest.raises(SpecError, match=r"steps\[1\].reducers: 20000 is more than 10000"):
        load_spec(write_steps_spec(tmp_path, body.replace("reducers: 0", "reducers: 20000"), [tmp_path / "job.py"]))


def test_a_zombie_of_a_dropped_step_writes_nothing_and_is_told_to_stop(broker):
    """After a step's keys are dropped, a late commit is refused without recreating any key of
    that step, and the heartbeat of its attempt answers "cancelled" (the worker stops it)."""
    from mrctl.worker.loop import TaskCancelled

    broker.publish_job("run.s1", JobMeta(state="running", module="job.py", mapper="M"), {"job.py": ""})
    broker.add_map_task("run.s1", "m:0", {"kind": "map", "index": 0}, b"chunk")
    claim = broker.claim_task("run.s1", "w-1", 10, 300)
    assert claim is not None
    broker.drop_job("run.s1")
    assert not broker.commit_map("run.s1", "m:0", claim.attempt, "w-1", {0: b"blob"}, {"maps_done": 1})
    assert broker.heartbeat("w-1", {}, "run.s1", "m:0", claim.attempt, 10) == "cancelled"
    assert not list(broker.r.scan_iter(match=f"{keys.job_prefix('run.s1')}*"))
    with pytest.raises(TaskCancelled):
        Worker(broker, name="w-1")._classes("run.s1")
