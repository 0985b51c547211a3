"""Writing the output: the three formats, byte for byte, and atomicity (no partial file, ever)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from mrctl.errors import SpecError
from mrctl.io.output import write_output

PAIRS = [("a", 1), ("café", [1, 2]), ("z", {"n": None})]


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_json_is_byte_for_byte_json_dumps_of_the_mapping(tmp_path):
    path = tmp_path / "out.json"
    assert write_output(path, iter(PAIRS), "json") == 3
    assert path.read_text(encoding="utf-8") == json.dumps(dict(PAIRS), ensure_ascii=False) + "\n"
    assert path.read_text(encoding="utf-8") == '{"a": 1, "café": [1, 2], "z": {"n": null}}\n'


def test_json_writes_non_string_keys_as_their_json_text(tmp_path):
    path = tmp_path / "out.json"
    write_output(path, [(None, 1), (2, "two"), ((1, "a"), 3)], "json")
    assert json.loads(path.read_text(encoding="utf-8")) == {"null": 1, "2": "two", '[1, "a"]': 3}


def test_jsonl_is_one_key_value_object_per_line(tmp_path):
    path = tmp_path / "out.jsonl"
    assert write_output(path, [("a", 1), ((1, "b"), None)], "jsonl") == 2
    assert path.read_text(encoding="utf-8") == (
        '{"key": "a", "value": 1}\n'
        '{"key": [1, "b"], "value": null}\n'
    )


def test_tsv_writes_strings_raw_and_everything_else_as_json(tmp_path):
    path = tmp_path / "out.tsv"
    write_output(path, [("a", 1), ("b", "x y"), (3, [1, 2]), ("é", None)], "tsv")
    assert path.read_bytes() == "a\t1\nb\tx y\n3\t[1, 2]\né\tnull\n".encode()


@pytest.mark.parametrize("fmt,text", [("json", "{}\n"), ("jsonl", ""), ("tsv", "")])
def test_no_pairs_still_writes_a_valid_file(tmp_path, fmt, text):
    path = tmp_path / f"out.{fmt}"
    assert write_output(path, iter(()), fmt) == 0
    assert path.read_text(encoding="utf-8") == text


def test_missing_parent_folders_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "out.json"
    write_output(path, [("k", 1)], "json")
    assert json.loads(path.read_text(encoding="utf-8")) == {"k": 1}


def test_the_target_keeps_its_old_content_until_the_new_one_is_complete(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old\n", encoding="utf-8")
    seen_mid_stream = []

    def pairs():
        yield "a", 1
        seen_mid_stream.append(path.read_text(encoding="utf-8"))
        yield "b", 2

    write_output(path, pairs(), "json")
    assert seen_mid_stream == ["old\n"]
    assert path.read_text(encoding="utf-8") == '{"a": 1, "b": 2}\n'
    assert _files(tmp_path) == ["out.json"]


class _Boom(Exception):
    pass


def _failing_pairs(exc: BaseException):
    yield "a", 1
    yield "b", 2
    raise exc


@pytest.mark.parametrize("exc", [_Boom("mid-stream"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_an_exception_mid_stream_leaves_no_partial_file(tmp_path, exc):
    path = tmp_path / "out.json"
    with pytest.raises(type(exc)):
        write_output(path, _failing_pairs(exc), "json")
    assert _files(tmp_path) == []  # neither the target nor the temp file


@pytest.mark.parametrize("fmt", ["json", "jsonl", "tsv"])
def test_a_failed_write_keeps_the_previous_output_intact(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    path.write_text("previous run\n", encoding="utf-8")
    with pytest.raises(TypeError):  # an unserializable value, discovered mid-stream
        write_output(path, [("a", 1), ("b", object())], fmt)
    assert path.read_text(encoding="utf-8") == "previous run\n"
    assert _files(tmp_path) == [f"out.{fmt}"]


def test_an_unknown_format_is_a_spec_error_and_writes_nothing(tmp_path):
    path = tmp_path / "out.xml"
    with pytest.raises(SpecError, match="unknown output format 'xml'"):
        write_output(path, [("a", 1)], "xml")
    assert _files(tmp_path) == []


# mkstemp creates its file 0600 and os.replace keeps that mode: the output must still get
# the mode open() would give, 0666 & ~umask.
def test_output_file_mode_follows_the_umask_like_open(tmp_path):
    old = os.umask(0o022)
    try:
        write_output(tmp_path / "out.json", [("a", 1)], "json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o644
