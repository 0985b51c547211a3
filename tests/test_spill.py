"""Data larger than Redis: committed intermediate data moves to the master's disk past half of
--redis-memory and comes back a window at a time; outputs are merged from disk. Expected
outputs come from plain Python over the same input."""

from __future__ import annotations

import collections
import dataclasses
import json

import pytest
from conftest import corpus_files

from mrctl.errors import InfraError
from mrctl.runner import RunOptions, run_job
from mrctl.spec import JobSpec
from mrctl.spill import SpillStore

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


def test_a_steps_outputs_larger_than_redis_reach_the_next_step_through_the_masters_disk(tmp_path):
    """Two steps through a 16 MiB Redis, the first one's outputs (every line, grouped: ~40 MB
    of random, incompressible text) more than twice Redis: they drain to disk during its reduce
    phase and come back as the next step's map tasks a window at a time. Before, they stayed in
    Redis, which filled up, lost attempts for a minute and failed."""
    import random
    import string

    from mrctl.spec import load_spec

    (tmp_path / "data").mkdir()
    rng = random.Random(7)
    for f in range(4):
        lines = ("".join(rng.choices(string.ascii_lowercase, k=3)) + " "
                 + "".join(rng.choices(string.ascii_letters, k=80)) for _ in range(120_000))
        (tmp_path / "data" / f"part{f}.txt").write_text("\n".join(lines) + "\n")
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


def test_a_partition_redis_cannot_take_back_fails_at_once_saying_what_helps(tmp_path):
    inputs = _repeated_corpus(tmp_path, 10)
    spec = _shuffle_spec(tmp_path, inputs, reducers=1)
    with pytest.raises(InfraError) as info:
        run_job(spec, RunOptions(redis_memory=str(16 << 20)))
    message = str(info.value)
    assert "partition 0 holds" in message and "More reducers" in message, message
    assert info.value.exit_code == 3
    assert not spec.output_path.exists()


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


def test_a_commit_redis_refuses_for_memory_fails_the_job_at_once(tmp_path):
    """One map task's output is larger than all of a 16 MiB Redis: its commit is refused
    ("OOM command not allowed"). The master sees the refusal in Redis's error counts and fails
    the job at once with exit 3 and what helps, instead of failing and losing attempts while
    Redis stays full."""
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
        run_job(spec, RunOptions(redis_memory=str(16 << 20)))
    message = str(info.value)
    assert info.value.exit_code == 3
    assert "Redis is full" in message and "writes refused" in message and "more --redis-memory" in message, message
    assert time.monotonic() - started < 30
    assert not spec.output_path.exists()


def test_spill_store_streams_outputs_back_a_pair_at_a_time(tmp_path):
    from mrctl import codec

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
