"""The codec: msgpack of plain data, type-exact round trips, a total key order, and no pickle.

Expected bytes are written out from the msgpack specification, not produced by the codec.
"""

from __future__ import annotations

import math
import pickle
import struct

import pytest

from mrctl.io import codec


@pytest.mark.parametrize("value,encoded", [
    (None, b"\xc0"),
    (False, b"\xc2"),
    (True, b"\xc3"),
    (1, b"\x01"),  # positive fixint
    (-1, b"\xff"),  # negative fixint
    (300, b"\xcd\x01\x2c"),  # uint16
    (1.5, b"\xcb" + struct.pack(">d", 1.5)),  # float64, never narrowed
    ("a", b"\xa1a"),  # fixstr
    ("é", b"\xa2\xc3\xa9"),  # UTF-8
    (b"a", b"\xc4\x01a"),  # bin8: bytes stay distinct from str
    ([1, 2], b"\x92\x01\x02"),  # fixarray
    ((1, 2), b"\x92\x01\x02"),  # a tuple is an array too
    ({"a": 1}, b"\x81\xa1a\x01"),  # fixmap
])
def test_pack_writes_the_msgpack_encoding(value, encoded):
    assert codec.pack(value) == encoded


def _assert_same(got, want):
    """Equal, and of the very same type at every level (True is not 1, 1.0 is not 1)."""
    assert type(got) is type(want), f"{got!r} is a {type(got).__name__}, expected {type(want).__name__}"
    if isinstance(want, tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _assert_same(g, w)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            _assert_same(got[key], want[key])
    elif isinstance(want, float) and want == 0:
        assert math.copysign(1, got) == math.copysign(1, want)
    else:
        assert got == want


@pytest.mark.parametrize("value,expected", [
    (True, True),
    (False, False),
    (0, 0),
    (1.0, 1.0),
    (-0.0, -0.0),
    (2**64 - 1, 2**64 - 1),
    (-(2**63), -(2**63)),
    ("", ""),
    (b"", b""),
    (b"\x00\xff", b"\x00\xff"),
    ("café ☕\t\n", "café ☕\t\n"),
    (None, None),
    ([1, [2, "x"]], (1, (2, "x"))),  # arrays read back as tuples, so keys stay hashable
    ([True, 1, 1.0], (True, 1, 1.0)),
    ({"k": [1]}, {"k": (1,)}),
    ({1: "a", "1": "b"}, {1: "a", "1": "b"}),  # non-string map keys are kept, not stringified
])
def test_round_trip_is_type_exact(value, expected):
    _assert_same(codec.unpack(codec.pack(value)), expected)


def test_nan_and_infinities_round_trip():
    back = codec.unpack(codec.pack([math.nan, math.inf, -math.inf]))
    assert math.isnan(back[0]) and back[1:] == (math.inf, -math.inf)


class _Picklable:
    def __reduce__(self):
        return (str, ("would have been pickled",))


@pytest.mark.parametrize("value", [
    object(), {1, 2}, _Picklable(), [1, _Picklable()], 2**64, -(2**63) - 1, {"k": object()},
], ids=["object", "set", "picklable", "nested", "too-big", "too-small", "dict-value"])
def test_anything_but_plain_data_is_refused_not_pickled(value):
    with pytest.raises(TypeError, match="keys and values must be plain data"):
        codec.pack(value)


_RAN: list[str] = []


def _side_effect(tag: str) -> str:
    _RAN.append(tag)
    return tag


class _Payload:
    def __reduce__(self):
        return (_side_effect, ("pickle payload executed",))


def test_unpack_never_runs_a_pickle_payload():
    blob = pickle.dumps(_Payload())
    with pytest.raises(ValueError):  # not msgpack: rejected as data
        codec.unpack(blob)
    assert _RAN == []


def test_encode_key_is_the_msgpack_bytes_and_lists_encode_like_tuples():
    assert codec.encode_key("a") == b"\xa1a"
    assert codec.encode_key([1, "a"]) == codec.encode_key((1, "a")) == b"\x92\x01\xa1a"


def test_group_key_is_type_exact_and_lists_group_as_tuples():
    # independent expectation: the msgpack spec's encodings, written by hand
    assert codec.group_key("1") == "1"
    assert codec.group_key(1) == b"\x01" and codec.group_key(True) == b"\xc3"
    assert codec.group_key(1.0) == b"\xcb\x3f\xf0" + bytes(6)
    assert len({codec.group_key(k) for k in (1, 1.0, True, "1")}) == 4
    assert codec.group_key([1, "a"]) == codec.group_key((1, "a")) == b"\x92\x01\xa1a"
    for key in ("x", 7, 2.5, False, None, (1, ("a",))):
        assert codec.key_of(codec.group_key(key)) == key


def test_sort_key_never_ties_distinct_keys_of_equal_value():
    assert sorted([1.0, True, 1, -0.0, 0, 0.0], key=codec.sort_key) == [True, 0, -0.0, 0.0, 1, 1.0]
    ordered = sorted([1.0, 1, 0.0, -0.0], key=codec.sort_key)
    assert [type(k) for k in ordered] == [float, float, int, float]
    assert str(ordered[0]) == "-0.0" and str(ordered[1]) == "0.0"


def test_plain_error_names_the_first_non_plain_type():
    assert codec.plain_error({"a": [1, 2.5, None, True, ("x",)]}) is None
    assert codec.plain_error(b"x") == "a bytes"
    assert codec.plain_error([1, {2, 3}]) == "a set"
    assert codec.plain_error({"k": object()}) == "a object"


def test_sort_key_orders_none_bools_numbers_strings_then_the_rest():
    mixed = ["b", (1, 3), 3, None, True, "A", -2.5, (1, 2), False, 0, "a"]
    assert sorted(mixed, key=codec.sort_key) == [
        None, False, True, -2.5, 0, 3, "A", "a", "b", (1, 2), (1, 3)]


def test_sort_key_puts_nan_first_among_numbers_instead_of_breaking_the_sort():
    ordered = sorted([3, math.nan, -1, 2.5], key=codec.sort_key)
    assert math.isnan(ordered[0]) and ordered[1:] == [-1, 2.5, 3]


def test_sort_key_orders_int_and_float_by_value():
    assert sorted([2, 1.5, -3, 10, 0.25], key=codec.sort_key) == [-3, 0.25, 1.5, 2, 10]
