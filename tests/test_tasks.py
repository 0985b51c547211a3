"""Map and reduce tasks over in-memory bytes: decoding, grouping, combining, partitioning, order.

Blobs are read and written here with msgpack directly (lists, not the codec's tuples), so the
expected layouts do not come from the code under test.
"""

from __future__ import annotations

import collections
import json
import re
import zlib

import msgpack
import pytest
from conftest import sequential_wordcount

from mrctl import Mapper, Reducer
from mrctl.errors import JobCodeError
from mrctl.io import codec
from mrctl.io.chunks import plan_chunks, read_chunk
from mrctl.worker import tasks

WORD = re.compile(r"[^\W\d_]+")


class WordMapper(Mapper):
    def map(self, line):
        for word in WORD.findall(line):
            yield word.lower(), 1


class SumReducer(Reducer):
    def __init__(self):
        self.calls = []
        self.setups = 0

    def setup(self):
        self.setups += 1

    def reduce(self, key, values):
        self.calls.append(key)
        return sum(values)


def _blob(blob: bytes) -> list:
    return msgpack.unpackb(blob, raw=False)


# -- decoding -----------------------------------------------------------------------------

@pytest.mark.parametrize("data,text,bad", [
    (b"a\r\nb\r\n", "a\nb\n", 0),  # CRLF folded to LF
    (b"a\rb\n", "a\rb\n", 0),  # a lone CR is content, not a line ending
    ("café\n".encode(), "café\n", 0),
    (b"ok \xff\n", "ok \ufffd\n", 1),
    (b"\xff\xfe\n", "\ufffd\ufffd\n", 2),
    ("real \ufffd ".encode() + b"\xff", "real \ufffd \ufffd", 1),  # a U+FFFD in the input is not an error
])
def test_decode_text_folds_crlf_and_counts_replacements(data, text, bad):
    assert tasks.decode_text(data) == (text, bad)


def test_strict_decoding_names_the_bad_bytes_and_their_line():
    with pytest.raises(tasks.InputDecodeError) as info:
        tasks.decode_text(b"fine\nalso fine\nbad \xff here\n", "strict")
    assert info.value.mrctl_line == 2  # 0-based, within the chunk
    assert "b'\\xff'" in str(info.value) and "strict" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert tasks.decode_text(b"a\r\n", "strict") == ("a\n", 0)


# -- map ----------------------------------------------------------------------------------

def test_map_groups_values_per_key_in_emission_order():
    result = tasks.run_map(WordMapper(), None, "the cat\r\nThe hat\nCafé café\n".encode(), 1)
    assert list(result.blobs) == [0]
    assert _blob(result.blobs[0]) == ["the", [1, 1], "cat", [1], "hat", [1], "café", [1, 1]]
    assert (result.records_in, result.records_out, result.decode_errors) == (3, 6, 0)


@pytest.mark.parametrize("data,lines", [
    (b"", 0), (b"a", 1), (b"a\n", 1), (b"a\n\n", 2), (b"a\r\nb", 2), (b"\n", 1),
])
def test_records_in_counts_lines_with_or_without_a_final_newline(data, lines):
    result = tasks.run_map(WordMapper(), None, data, 2)
    assert result.records_in == lines


def test_an_empty_chunk_makes_no_blob():
    assert tasks.run_map(WordMapper(), None, b"", 3).blobs == {}


def test_decode_errors_are_counted_per_chunk():
    result = tasks.run_map(WordMapper(), None, b"ab\xff\ncd \xfe\xfe\n", 1)
    assert result.decode_errors == 3
    assert _blob(result.blobs[0]) == ["ab", [1], "cd", [1]]  # U+FFFD is not a letter


def test_keys_go_to_partition_crc32_of_their_utf8_mod_r():
    words = [f"w{chr(97 + i)}x{chr(97 + i % 5)}" for i in range(20)]
    result = tasks.run_map(WordMapper(), None, " ".join(words).encode() + b"\n", 4)
    expected = collections.defaultdict(list)
    for word in words:
        expected[zlib.crc32(word.encode()) % 4].append(word)
    got = {p: _blob(blob)[0::2] for p, blob in result.blobs.items()}
    assert got == dict(expected)  # and a partition with no key has no blob at all


@pytest.mark.parametrize("key,encoded", [
    ("hello", b"hello"), ("é", "é".encode()), (5, b"\x05"), ((1, "a"), b"\x92\x01\xa1a"),
    ([1, "a"], b"\x92\x01\xa1a"), (None, b"\xc0"),
])
def test_default_partition_is_crc32_of_the_key_encoding(key, encoded):
    for r in (1, 3, 7):
        assert tasks.default_partition(key, r) == zlib.crc32(encoded) % r
        assert Mapper().partition(key, r) == zlib.crc32(encoded) % r


def test_a_custom_partition_method_is_used():
    class FirstLetter(WordMapper):
        def partition(self, key, num_partitions):
            return 0 if key.startswith("a") else num_partitions - 1

    result = tasks.run_map(FirstLetter(), None, b"apple banana avocado cherry\n", 3)
    assert {p: _blob(b)[0::2] for p, b in result.blobs.items()} == {
        0: ["apple", "avocado"], 2: ["banana", "cherry"]}


def test_the_combiner_runs_once_per_task_and_only_on_keys_with_several_values():
    combiner = SumReducer()
    result = tasks.run_map(WordMapper(), combiner, b"a b a\nc a\n", 1)
    assert _blob(result.blobs[0]) == ["a", [3], "b", [1], "c", [1]]
    assert combiner.calls == ["a"] and combiner.setups == 1
    assert (result.records_in, result.records_out) == (2, 3)


def test_a_combiner_that_yields_pairs_may_emit_other_keys_and_they_merge_with_the_rest():
    # one value of its own key (returned), or pairs of any keys (yielded): "b" gets both
    class Spread(Reducer):
        def reduce(self, key, values):
            return self.spread(values) if key == "a" else sum(values)

        def spread(self, values):
            yield "b", 10
            yield "a", len(values)

    result = tasks.run_map(WordMapper(), Spread(), b"a b a\nb a c c\n", 1)
    counts = collections.Counter("a b a b a c c".split())  # a 3, b 2, c 2
    # in the order the combiner's pairs came: "a" (first seen) gave "b" first
    assert _blob(result.blobs[0]) == ["b", [10, counts["b"]], "a", [counts["a"]], "c", [counts["c"]]]


def test_an_exception_in_a_map_only_task_carries_its_line_and_a_non_pair_is_named():
    class Faulty(Mapper):
        def map(self, line):
            yield line, 1
            if line == "bad":
                raise ZeroDivisionError("boom")  # after a pair of this line was taken

    with pytest.raises(ZeroDivisionError) as info:
        tasks.run_map(Faulty(), None, b"ok\nok\nbad\nok\n", 0)
    assert info.value.mrctl_line == 2

    class Triples(Mapper):
        def map(self, line):
            yield line, 1, 2

    for partitions in (0, 2):
        with pytest.raises(JobCodeError, match="Triples.map"):
            tasks.run_map(Triples(), None, b"x\n", partitions)


def test_setup_runs_once_and_teardown_adds_to_an_existing_key():
    class Counting(WordMapper):
        setups = 0

        def setup(self):
            Counting.setups += 1

        def teardown(self):
            yield "the", 100

    result = tasks.run_map(Counting(), None, b"the end\nthe\n", 1)
    assert Counting.setups == 1
    assert _blob(result.blobs[0]) == ["the", [1, 1, 100], "end", [1]]


# In-mapper combining (count in `map`, emit in `teardown`, like mrjob's mapper_final): the
# teardown's keys need not have been emitted by `map`.
def test_teardown_may_emit_keys_that_map_never_emitted():
    class InMapperCombining(Mapper):
        def setup(self):
            self.counts = collections.Counter()

        def map(self, line):
            self.counts.update(line.split())
            return ()

        def teardown(self):
            yield from sorted(self.counts.items())

    result = tasks.run_map(InMapperCombining(), None, b"a b a\n", 1)
    assert _blob(result.blobs[0]) == ["a", [2], "b", [1]]


def test_map_chunk_overrides_per_line_map():
    class WholeChunk(Mapper):
        def map(self, line):
            raise AssertionError("map must not be called when map_chunk is defined")

        def map_chunk(self, text):
            yield "chars", len(text)

    result = tasks.run_map(WholeChunk(), None, b"ab\r\ncd\r\n", 1)
    assert _blob(result.blobs[0]) == ["chars", [6]]  # it sees "ab\ncd\n": CRLF already folded


def test_an_exception_in_map_carries_its_line_in_the_chunk():
    class Faulty(WordMapper):
        def map(self, line):
            if "bad" in line:
                raise ZeroDivisionError("boom")
            yield from super().map(line)

    with pytest.raises(ZeroDivisionError) as info:
        tasks.run_map(Faulty(), None, b"ok\nok\nbad\nok\n", 1)
    assert info.value.mrctl_line == 2


def test_list_keys_group_as_tuples():
    class ListKeys(Mapper):
        def map(self, line):
            yield [1, line], 1

    result = tasks.run_map(ListKeys(), None, b"x\nx\ny\n", 1)
    assert _blob(result.blobs[0]) == [[1, "x"], [1, 1], [1, "y"], [1]]


# -- merge and reduce ---------------------------------------------------------------------

def test_merge_blobs_keeps_blob_order_for_values():
    first = msgpack.packb(["a", [1, 2], "b", [3]], use_bin_type=True)
    second = msgpack.packb(["c", [5], "a", [4], [1, "t"], [6]], use_bin_type=True)
    third = msgpack.packb([[1, "t"], [7]], use_bin_type=True)
    # keys come back as their identities: a str itself, anything else its msgpack bytes
    assert tasks.merge_blobs([first, second, third]) == {
        "a": [1, 2, 4], "b": [3], "c": [5], b"\x92\x01\xa1t": [6, 7]}


def test_reduce_runs_keys_in_sorted_order_and_counts_values():
    reducer = SumReducer()
    groups = {"b": [1, 2], None: [5], 3: [1], "a": [7], False: [0]}
    result = tasks.run_reduce(reducer, {codec.group_key(k): v for k, v in groups.items()})
    assert reducer.calls == [None, False, 3, "a", "b"] and reducer.setups == 1
    assert result.pairs == [(None, 5), (False, 0), (3, 1), ("a", 7), ("b", 3)]
    assert result.records_in == 6


def test_reduce_output_is_sorted_by_key_including_generated_and_teardown_pairs():
    class Fanout(Reducer):
        def reduce(self, key, values):
            yield key, len(values)
            yield key + "!", values[0]

        def teardown(self):
            yield "a", "from teardown"

    result = tasks.run_reduce(Fanout(), {"b": [1, 2], "c": [3]})
    assert result.pairs == [("a", "from teardown"), ("b", 2), ("b!", 1), ("c", 1), ("c!", 3)]


def test_a_reducer_returning_a_list_emits_it_as_one_value():
    class Sorting(Reducer):
        def reduce(self, key, values):
            return sorted(values)

    assert tasks.run_reduce(Sorting(), {"k": [3, 1, 2]}).pairs == [("k", [1, 2, 3])]


def test_a_reducer_yielding_a_non_pair_is_a_clear_error():
    class Bad(Reducer):
        def reduce(self, key, values):
            yield 5

    with pytest.raises(TypeError, match=r"reduce\(\) must yield \(key, value\) pairs or return one value; "
                       r"Bad.reduce in .*test_tasks.py:\d+ yielded an int 5"):
        tasks.run_reduce(Bad(), {"k": [1]})


def test_pack_pairs_is_a_flat_key_value_list_and_round_trips():
    pairs = [("a", 1), ((1, 2), [3, "x"]), (None, {"n": 1})]
    assert msgpack.unpackb(tasks.pack_pairs(pairs), raw=False) == ["a", 1, [1, 2], [3, "x"], None, {"n": 1}]
    assert tasks.unpack_pairs(tasks.pack_pairs(pairs)) == [("a", 1), ((1, 2), (3, "x")), (None, {"n": 1})]


# -- the whole pipeline, without Redis ----------------------------------------------------

def _map_reduce(chunks: list[bytes], partitions: int, combiner: bool = True) -> tuple[list, int]:
    """The protocol's data path in one process: map every chunk, reduce every partition."""
    results = [tasks.run_map(WordMapper(), SumReducer() if combiner else None, data, partitions)
               for data in chunks]
    pairs = []
    for r in range(partitions):
        blobs = [res.blobs[r] for res in results if r in res.blobs]
        pairs.extend(tasks.run_reduce(SumReducer(), tasks.merge_blobs(blobs)).pairs)
    return pairs, sum(res.decode_errors for res in results)


@pytest.mark.parametrize("chunk_size,partitions,combiner", [(1, 1, True), (40, 3, True), (97, 5, False)])
def test_map_then_reduce_over_chunks_equals_a_sequential_word_count(tmp_path, chunk_size, partitions, combiner):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_bytes("The café opened.\r\nthe CAFÉ closed; the end\r\n".encode() * 5 + b"x\xffy z\n")
    second.write_bytes("naïve 42 snake_case words\nno final newline".encode())
    chunks = [read_chunk(ref) for ref in plan_chunks([first, second], chunk_size)]
    pairs, bad = _map_reduce(chunks, partitions, combiner)
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), "a key was reduced in two partitions"
    assert json.dumps(dict(sorted(pairs)), ensure_ascii=False) + "\n" == sequential_wordcount([first, second])
    assert bad == 1


# Issue 11 point 2: 1, 1.0 and True are equal dict keys in Python, so one map task grouped them
# together while the partitioner hashed their msgpack encodings apart: the result depended on
# the chunking. They are three keys everywhere now.
def test_the_result_does_not_depend_on_chunking_for_equal_keys_of_different_types():
    class Typed(Mapper):
        def map(self, line):
            yield {"i": 1, "f": 1.0, "b": True}[line], 1

    data = [b"i\n", b"f\n", b"b\n"]
    whole = [tasks.run_map(Typed(), None, b"".join(data), 3)]
    split = [tasks.run_map(Typed(), None, d, 3) for d in data]

    def reduced(results):
        out = []
        for r in range(3):
            blobs = [res.blobs[r] for res in results if r in res.blobs]
            out += tasks.run_reduce(SumReducer(), tasks.merge_blobs(blobs)).pairs
        return sorted((type(k).__name__, k, v) for k, v in out)

    assert reduced(whole) == reduced(split)


def test_skip_bad_drops_every_pair_of_a_record_whose_map_raises_and_counts_it():
    from mrctl.worker.tasks import TaskInterrupted

    class Half(Mapper):
        def map(self, line):
            yield line, 1  # yielded before the exception: must not survive it
            if line.startswith("bad"):
                raise ValueError(f"cannot parse {line!r}")

    text = "ok\nbad one\nok\n" + "".join(f"bad {i}\n" for i in range(7))
    result = tasks.run_map(Half(), None, text.encode(), 1, skip_bad=True)
    assert tasks.merge_blobs(result.blobs.values()) == {"ok": [1, 1]}
    assert result.records_in == 10 and result.bad_records == 8
    assert result.bad_samples[0] == (1, "ValueError: cannot parse 'bad one'")
    assert [i for i, _ in result.bad_samples] == [1, 3, 4, 5, 6]  # the first five are kept

    class Interrupted(Mapper):
        def map(self, line):
            raise TaskInterrupted("a timeout is never a bad record")

    with pytest.raises(TaskInterrupted):
        tasks.run_map(Interrupted(), None, b"a\n", 1, skip_bad=True)
    with pytest.raises(ValueError):  # without skip_bad, as before: the task fails
        tasks.run_map(Half(), None, b"bad\n", 1)


def test_counters_of_mapper_and_combiner_share_the_attempt():
    from mrctl.job import TaskContext, with_context

    class Counting(Mapper):
        def map(self, line):
            self.increment_counter("m", "lines")
            yield line, 1

    class Summing(Reducer):
        def reduce(self, key, values):
            self.increment_counter("c", "calls")
            return sum(values)

    context = TaskContext("m:0", 1)
    tasks.run_map(with_context(Counting, context), with_context(Summing, context), b"a\na\nb\n", 2)
    assert context.counters == {("m", "lines"): 3, ("c", "calls"): 1}
    with pytest.raises(ValueError):
        Counting().increment_counter("a:b", "x")
    with pytest.raises(TypeError):
        Counting().increment_counter("a", "x", 1.5)
