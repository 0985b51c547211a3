"""Data larger than Redis: committed intermediate data moves to the master's disk past half of
--redis-memory and comes back a window at a time; outputs are merged from disk. Expected
outputs come from plain Python over the same input."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json

import pytest
from conftest import corpus_files

from mrctl.errors import InfraError
from mrctl.master.driver import RunOptions, run_job
from mrctl.master.spill_store import SpillStore
from mrctl.spec.jobspec import JobSpec

SHUFFLE = '''
from mrctl import Mapper, Reducer


class FirstWord(Mapper):
    """Every line, keyed by its first word: the whole input crosses the shuffle."""

    def map(self, line):
        words = line.split()
        if words:
            yield words[0].lower(), line


class SortedLines(Reducer):
    def reduce(self, word, lines):
        return sorted(lines)
'''


def _shuffle_spec(tmp_path, inputs, reducers: int, output: str = "out.json") -> JobSpec:
    module = tmp_path / "shuffle.py"
    module.write_text(SHUFFLE)
    return JobSpec(name="shuffle", spec_path=tmp_path / "shuffle.yaml", inputs=tuple(inputs), module=module,
                   mapper="FirstWord", reducer="SortedLines", combiner=None, output_path=tmp_path / output,
                   output_format="json", reducers=reducers, chunk_size=1 << 20, workers=2, backend="local")


def _repeated_corpus(tmp_path, times: int) -> list:
    books = b"".join(p.read_bytes() for p in corpus_files())
    inputs = []
    for i in range(times // 5):
        path = tmp_path / f"part{i}.txt"
        path.write_bytes(books * 5)
        inputs.append(path)
    return inputs


def _expected(inputs) -> dict[str, list[str]]:
    found: dict[str, list[str]] = collections.defaultdict(list)
    for path in inputs:
        with open(path, encoding="utf-8", errors="replace", newline=None) as f:
            for line in f:
                line = line.rstrip("\n")
                if line.split():
                    found[line.split()[0].lower()].append(line)
    return {word: sorted(lines) for word, lines in found.items()}


@pytest.mark.slow
def test_a_shuffle_four_times_larger_than_redis_completes_exactly_within_it(tmp_path):
    """~83 MB of text shuffled whole (each line keyed by its first word) through a 16 MiB
    Redis: map output spills, partitions come back a window at a time, outputs drain to disk."""
    inputs = _repeated_corpus(tmp_path, 25)
    size = sum(p.stat().st_size for p in inputs)
    assert size >= 4 * (16 << 20)
    spec = _shuffle_spec(tmp_path, inputs, reducers=32)
    final = run_job(spec, RunOptions(redis_memory=str(16 << 20)))
    assert json.loads(spec.output_path.read_text(encoding="utf-8")) == _expected(inputs)
    print(f"{size / 1e6:.0f} MB through a 16 MiB Redis: spilled {final.spilled_bytes / 1e6:.0f} MB, "
          f"Redis peak {final.redis_peak_bytes / 1e6:.1f} MB")
    assert final.spilled_bytes > 16 << 20
    assert final.redis_peak_bytes < 16 << 20


TWO_STEPS = """\
name: two-steps
input: data/
module: job.py
reducers: 64
chunk_size: 1MiB
output: out.json
steps:
  - {name: group, mapper: FirstWord, reducer: AllLines}
  - {name: size, reducer: Length}
"""

GROUP_THEN_SIZE = SHUFFLE + '''

class AllLines(Reducer):
    def reduce(self, word, lines):
        return "\\n".join(lines)


class Length(Reducer):
    def reduce(self, word, texts):
        return sum(len(text) for text in texts)
'''


@pytest.mark.slow
def test_a_steps_outputs_larger_than_redis_reach_the_next_step_through_the_masters_disk(tmp_path):
    """Two steps through a 16 MiB Redis, the first one's outputs (every line, grouped: ~40 MB
    of random, incompressible text) more than twice Redis: they drain to disk during its reduce
    phase and come back as the next step's map tasks a window at a time. Before, they stayed in
    Redis, which filled up, lost attempts for a minute and failed."""
    from mrctl.spec.jobspec import load_spec

    _random_lines(tmp_path / "data")
    (tmp_path / "job.py").write_text(GROUP_THEN_SIZE)
    (tmp_path / "two.yaml").write_text(TWO_STEPS)
    spec = load_spec(tmp_path / "two.yaml", environ={})  # 64 reducers: ~0.6 MB outputs
    final = run_job(dataclasses.replace(spec, backend="local", workers=2), RunOptions(redis_memory=str(16 << 20)))
    grouped = collections.defaultdict(list)
    for path in sorted((tmp_path / "data").iterdir()):
        for line in path.read_text().splitlines():
            grouped[line.split()[0].lower()].append(line)
    assert sum(len(line) + 1 for lines in grouped.values() for line in lines) > 2 * (16 << 20)
    assert json.loads(spec.output_path.read_text(encoding="utf-8")) == {
        word: len("\n".join(lines)) for word, lines in grouped.items()}
    print(f"spilled {final.spilled_bytes / 1e6:.0f} MB, Redis peak {final.redis_peak_bytes / 1e6:.1f} MB")
    assert final.redis_peak_bytes < 16 << 20 and final.lost == 0 and final.retries == 0
    assert final.spilled_bytes > 2 * (16 << 20)


def _random_lines(folder, files: int = 4, lines: int = 120_000) -> None:
    """Lines of a 3-letter word and 80 random letters (incompressible: zstd saves ~25%)."""
    import random
    import string

    folder.mkdir()
    rng = random.Random(7)
    for f in range(files):
        text = ("".join(rng.choices(string.ascii_lowercase, k=3)) + " "
                + "".join(rng.choices(string.ascii_letters, k=80)) for _ in range(lines))
        (folder / f"part{f}.txt").write_text("\n".join(text) + "\n")


MAP_ONLY_THEN_SIZE = """\
name: map-only-first
input: data/
module: job.py
reducers: 16
chunk_size: 1MiB
output: out.json
steps:
  - {name: key, mapper: FirstWord}
  - {name: size, reducer: Length}
"""


@pytest.mark.slow
def test_a_map_only_steps_outputs_larger_than_redis_reach_the_next_step_through_the_masters_disk(tmp_path):
    """A map-only first step whose outputs (every line, keyed: ~40 MB) are more than twice a
    16 MiB Redis: they drain to disk during its map phase and come back as the next step's
    map tasks a window at a time. Before, they stayed in Redis, which filled up: exit 3."""
    from mrctl.spec.jobspec import load_spec

    _random_lines(tmp_path / "data")
    (tmp_path / "job.py").write_text(GROUP_THEN_SIZE)
    (tmp_path / "two.yaml").write_text(MAP_ONLY_THEN_SIZE)
    spec = load_spec(tmp_path / "two.yaml", environ={})
    final = run_job(dataclasses.replace(spec, backend="local", workers=2), RunOptions(redis_memory=str(16 << 20)))
    sizes: dict[str, int] = collections.Counter()
    for path in sorted((tmp_path / "data").iterdir()):
        for line in path.read_text().splitlines():
            sizes[line.split()[0].lower()] += len(line)
    assert json.loads(spec.output_path.read_text(encoding="utf-8")) == sizes
    print(f"spilled {final.spilled_bytes / 1e6:.0f} MB, Redis peak {final.redis_peak_bytes / 1e6:.1f} MB")
    assert final.redis_peak_bytes < 16 << 20 and final.lost == 0 and final.retries == 0
    assert final.spilled_bytes > 2 * (16 << 20)


@pytest.mark.slow
def test_a_map_only_jobs_output_larger_than_redis_is_written_from_the_masters_disk(tmp_path):
    """A map-only job (reducers: 0) whose output is more than twice a 16 MiB Redis: its map
    outputs drain to disk during the map phase and are written from there, in input order."""
    from mrctl.spec.jobspec import load_spec

    _random_lines(tmp_path / "data")
    (tmp_path / "job.py").write_text(SHUFFLE)
    (tmp_path / "job.yaml").write_text("name: keyed\ninput: data/\njob: {module: job.py, mapper: FirstWord}\n"
                                       "reducers: 0\nchunk_size: 1MiB\noutput: out.jsonl\n")
    spec = load_spec(tmp_path / "job.yaml", environ={})
    final = run_job(dataclasses.replace(spec, backend="local", workers=2), RunOptions(redis_memory=str(16 << 20)))
    expected = [json.dumps({"key": line.split()[0].lower(), "value": line}, ensure_ascii=False)
                for path in sorted((tmp_path / "data").iterdir()) for line in path.read_text().splitlines()]
    assert spec.output_path.read_text(encoding="utf-8").splitlines() == expected
    assert final.redis_peak_bytes < 16 << 20 and final.lost == 0 and final.retries == 0
    assert final.spilled_bytes > 16 << 20  # compressed: more than the whole Redis holds


DIGEST = SHUFFLE + '''

import hashlib
import os
import signal


class Digest(Reducer):
    """A key's line count and the sha1 of its lines, sorted: every line reaches the reducer,
    the output stays small. With the param die_first, the first attempt kills its own worker
    once it has taken its whole input (its next attempt is fed again from the start)."""

    def reduce(self, word, lines):
        if self.params.get("die_first") and self.attempt == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        lines = sorted(lines)
        return [len(lines), hashlib.sha1("\\n".join(lines).encode()).hexdigest()]
'''


def _digests(inputs) -> dict[str, list]:
    return {word: [len(lines), hashlib.sha1("\n".join(lines).encode()).hexdigest()]
            for word, lines in _expected(inputs).items()}


@pytest.mark.slow
@pytest.mark.parametrize("die_first", [False, True], ids=["fed", "fed-again-after-its-worker-died"])
def test_a_partition_larger_than_redis_can_take_back_is_fed_to_its_reduce_task_exactly(tmp_path, die_first):
    """33 MB of lines in one partition, through a 16 MiB Redis: more than Redis can hold at all,
    so its reduce task is fed it a window at a time onto its worker's disk (sorted runs, merged)
    and the output is exact; the attempt after a worker died mid-task is fed it again. (Before,
    the job failed: "partition 0 holds 13.5 MB ... More reducers ... help".)"""
    inputs = _repeated_corpus(tmp_path, 10)
    spec = dataclasses.replace(_shuffle_spec(tmp_path, inputs, reducers=1), reducer="Digest",
                               params={"die_first": die_first})
    (tmp_path / "shuffle.py").write_text(DIGEST)
    final = run_job(spec, RunOptions(redis_memory=str(16 << 20), lease_s=2.0))
    assert json.loads(spec.output_path.read_text(encoding="utf-8")) == _digests(inputs)
    assert final.redis_peak_bytes < 16 << 20
    # the partition, compressed, is over half of Redis (a fifth may come back at once)
    assert final.spilled_bytes > 8 << 20
    assert final.lost == (1 if die_first else 0)


def test_a_take_sent_again_after_a_lost_reply_returns_the_same_data_and_loses_none(broker):
    """Taking a partition out of Redis is one script on a key of its own take: run again (the
    reply was lost, redis-py sent it again) it answers the same blobs, and a commit that landed
    meanwhile waits in a fresh hash for the next take. (Before, a MULTI of HGETALL and DEL sent
    again answered nothing, and the blobs were gone.)"""
    from mrctl.broker import keys, lua

    script = broker.r.register_script(lua.TAKE_HASH)

    def take(taken: str) -> dict:
        flat = script(keys=[source, taken])
        return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}

    source, first = keys.part("J", 0), keys.taken("J", "t1")
    broker.r.hset(source, mapping={"1": b"a", "2": b"bb"})
    assert take(first) == {b"1": b"a", b"2": b"bb"}
    broker.r.hset(source, "3", b"late")  # a commit after the take
    assert take(first) == {b"1": b"a", b"2": b"bb"}  # sent again
    assert broker.take_partition("J", 0) == {3: b"late"}  # the next take: the late commit
    # the broker's own take dropped its key once it had the data (this test's first stays)
    assert set(broker.r.scan_iter(match=keys.taken("J", "*"))) == {first.encode()}


def test_taking_some_map_outputs_sent_again_returns_the_same_and_leaves_the_rest(broker):
    """A map-only step's outputs are taken by index (those small enough to come back): sent
    again, the take answers the same blobs; fields not asked for, and a commit that landed
    meanwhile, stay for the next take."""
    from mrctl.broker import keys, lua

    script = broker.r.register_script(lua.TAKE_FIELDS)
    source, first = keys.part("J", 0), keys.taken("J", "t1")
    broker.r.hset(source, mapping={"0": b"a", "1": b"big", "2": b"cc"})
    assert broker.map_output_sizes("J") == {0: 1, 1: 3, 2: 2}
    flat = script(keys=[source, first], args=[0, 2, 5])  # 5: a task that emitted nothing
    assert dict(zip(flat[::2], flat[1::2], strict=True)) == {b"0": b"a", b"2": b"cc"}
    broker.r.hset(source, "4", b"late")
    again = script(keys=[source, first], args=[0, 2, 5])
    assert dict(zip(again[::2], again[1::2], strict=True)) == {b"0": b"a", b"2": b"cc"}
    assert broker.map_output_sizes("J") == {1: 3, 4: 4}
    assert broker.take_map_outputs("J", [4]) == {4: b"late"}
    assert broker.r.hgetall(source) == {b"1": b"big"}


def test_before_the_last_step_an_output_too_big_to_come_back_stays_in_redis(broker):
    """Draining before the last step leaves in Redis any committed output the next step could
    not take back from disk at once (over a fifth of Redis): it moves into that step's map task
    inside Redis instead. The last step drains every committed output. (A real Redis.)"""
    from mrctl.broker import keys
    from mrctl.master.spill import RESTORE_BUDGET, Spiller

    limit = 16 << 20
    small, big = b"s" * 1000, b"b" * int(RESTORE_BUDGET * limit + 1)
    for job in ("A", "B"):
        for r, blob in enumerate((small, big)):
            broker.r.set(keys.out(job, r), blob)
            broker.r.setrange(keys.done(job, "r"), 4 * r, (1).to_bytes(4, "big"))  # committed by attempt 1
    spiller = Spiller(broker)
    try:
        spiller.begin_step("A", 2, limit)
        spiller.drain_outputs(largest=int(RESTORE_BUDGET * limit))  # a step before the last
        assert broker.r.get(keys.out("A", 1)) == big and broker.r.get(keys.out("A", 0)) is None
        spiller.begin_step("B", 2, limit)
        assert spiller.carried() == {0}  # output 0 comes back from disk, output 1 stays in Redis
        spiller.drain_outputs()  # the last step
        assert broker.r.get(keys.out("B", 0)) is None and broker.r.get(keys.out("B", 1)) is None
        assert spiller.store.take_output("B", 1) == big
    finally:
        spiller.store.close()


HUGE_VALUE = '''
import os
from mrctl import Mapper, Reducer


class Huge(Mapper):
    def map(self, line):
        yield "key", os.urandom(12 << 20).hex()  # 24 MB of text, about 12 MB zstd-compressed


class Keep(Reducer):
    def reduce(self, key, values):
        return len(list(values))
'''


@pytest.mark.slow
def test_a_commit_redis_refuses_for_memory_fails_the_job_at_once(tmp_path):
    """One map task's output is larger than all of a 16 MiB Redis: its commit is refused
    ("OOM command not allowed"), and again when the task is tried again. The master sees the
    refusals in Redis's error counts and fails the job with exit 3 and what helps, instead of
    losing 16 attempts over 3.5 minutes and failing with exit 1."""
    import time

    data = tmp_path / "in.txt"
    data.write_text("one line\n")
    module = tmp_path / "huge.py"
    module.write_text(HUGE_VALUE)
    spec = JobSpec(name="huge", spec_path=tmp_path / "huge.yaml", inputs=(data,), module=module, mapper="Huge",
                   reducer="Keep", combiner=None, output_path=tmp_path / "out.json", output_format="json",
                   reducers=1, workers=1, backend="local", max_attempts=4)
    started = time.monotonic()
    with pytest.raises(InfraError) as info:
        # a short lease: the refused attempt comes back when its lease ends (the job fails on
        # the second refusal), not after the default 10 s
        run_job(spec, RunOptions(redis_memory=str(16 << 20), lease_s=2.0))
    message = str(info.value)
    assert info.value.exit_code == 3
    assert "Redis is full" in message and "writes refused" in message and "more --redis-memory" in message, message
    assert time.monotonic() - started < 30
    assert not spec.output_path.exists()


def test_spill_store_streams_outputs_back_a_pair_at_a_time(tmp_path):
    from mrctl.io import codec

    store = SpillStore()
    try:
        pairs = [(f"k{i:05d}", ["x" * 50, i]) for i in range(3000)]
        blob = codec.pack_blob([x for pair in pairs for x in pair])
        assert blob[:4] == codec.ZSTD_MAGIC  # large enough to be compressed
        store.add_output("J", 0, blob)
        store.add_partition("J", 2, {0: b"a", 5: b"bb"})
        store.add_partition("J", 2, {7: b"ccc"})
        assert store.partition_bytes("J", 2) == 6 and store.has_partitions("J")
        assert list(store.output_pairs("J", 0)) == [(k, tuple(v)) for k, v in pairs]
        assert store.take_partition("J", 2) == {0: b"a", 5: b"bb", 7: b"ccc"}
        assert not store.has_partitions("J")
    finally:
        store.close()


class ScriptedRedis:
    """What the Spiller reads of Redis (INFO memory and errorstats), set by the test, and the
    spills it asks for, counted."""

    def __init__(self) -> None:
        self.used, self.refused, self.spills = 1 << 20, 0, 0

    def memory(self):
        from mrctl.broker.shuffle import RedisMemory

        return RedisMemory(self.used, self.used, 16 << 20, self.refused)

    def take_partition(self, job, r):
        self.spills += 1
        return {}


def test_a_moment_of_refused_writes_is_relieved_and_refusals_that_go_on_fail_the_job():
    from mrctl.master import spill

    redis, now = ScriptedRedis(), [0.0]
    spiller = spill.Spiller(redis, clock=lambda: now[0])  # type: ignore[arg-type]
    spiller.begin_step("J", 1, 16 << 20)

    def look(after_s, refused=0):
        now[0] += after_s
        redis.refused += refused
        spiller.relieve("map", last_step=True)

    look(0.1)
    look(0.1, refused=3)  # a burst between two looks: relieved at once, not failed
    look(0.1, refused=1)  # the same burst's stragglers
    assert redis.spills == 1
    for _ in range(31):
        look(1.0)  # nothing refused for 30 s: recovered
    look(0.1, refused=1)  # a new burst, relieved again ...
    assert redis.spills == 2
    look(5.0)
    with pytest.raises(InfraError) as info:
        look(5.0, refused=1)  # ... and refused again 10 s later (a refused commit, tried again)
    assert info.value.exit_code == 3 and "Redis is full" in str(info.value) and "6 writes refused" in str(info.value)
