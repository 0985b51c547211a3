"""Input formats: how a file's bytes become the records that `Mapper.map` receives.

    text         a line per record (str, without its line ending); the default
    jsonl        a JSON value per line (blank lines skipped)
    csv          a dict per row, keyed by the header row (RFC 4180, as Python's csv module
                 reads it: quoted fields may hold commas, quotes and newlines)
    whole_file   one record per file: its whole text
    {records: D} multi-line records separated by the string D (e.g. "\\n\\n", a blank line)

A format given in the spec applies to every file of its input entry; without one, a file
ending in .csv or .jsonl (before any compression suffix) is read in that format, any other as
text. Files ending in .gz, .bz2 or .xz are decompressed first, whatever their format.

The spec's side is `InputFormat`; what one map task needs to parse its chunk (the format, the
CSV header read by the master, the compression) is a `ChunkFormat`, sent with the task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrctl.errors import SpecError
from mrctl.io.formats.bad_record import BadRecord, CorruptInput

__all__ = ["BadRecord", "ChunkFormat", "CorruptInput", "InputFormat", "compression_of",
           "implied_format", "parse_format", "KINDS", "TEXT", "TEXT_CHUNK"]

KINDS = ("text", "jsonl", "csv", "whole_file", "records")
COMPRESSIONS = {".gz": "gz", ".bz2": "bz2", ".xz": "xz"}
_IMPLIED = {".csv": "csv", ".jsonl": "jsonl"}


@dataclass(frozen=True)
class InputFormat:
    """A format as the spec names it; `delimiter` only for `records`."""

    kind: str = "text"
    delimiter: str | None = None


TEXT = InputFormat()


@dataclass(frozen=True)
class ChunkFormat:
    """How a map task parses its chunk: the format, the CSV header (None: the chunk's first
    row is the header, as in a compressed file), and the compression of the chunk's bytes."""

    kind: str = "text"
    delimiter: str | None = None
    header: tuple[str, ...] | None = None
    compression: str | None = None

    def to_fields(self) -> dict[str, str]:
        """The task fields that carry this format to a worker (plain text is sent as nothing)."""
        fields = {"format": self.kind} if self.kind != "text" else {}
        if self.delimiter is not None:
            fields["delimiter"] = self.delimiter
        if self.header is not None:
            fields["header"] = json.dumps(list(self.header))
        if self.compression is not None:
            fields["compression"] = self.compression
        return fields

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> ChunkFormat:
        header = fields.get("header")
        return cls(fields.get("format") or "text", fields.get("delimiter"),
                   tuple(json.loads(header)) if header else None, fields.get("compression") or None)


TEXT_CHUNK = ChunkFormat()


def parse_format(value: Any, where: str) -> InputFormat:
    """The `format:` of an input mapping: a name, or `{records: DELIMITER}`."""
    if isinstance(value, dict):
        if list(value) != ["records"] or not isinstance(value["records"], str) or not value["records"]:
            raise SpecError(f"{where}: format: expected {{records: DELIMITER}} with a non-empty "
                            f"string delimiter (e.g. \"\\n\\n\"), got {value!r}")
        return InputFormat("records", value["records"])
    if value not in KINDS or value == "records":
        raise SpecError(f"{where}: format: {value!r} is not supported; expected one of text, jsonl, "
                        "csv, whole_file or {records: DELIMITER}")
    return InputFormat(value)


def compression_of(path: Path) -> str | None:
    """The compression a file's extension names (gz, bz2, xz), if any."""
    return COMPRESSIONS.get(path.suffix.lower())


def implied_format(path: Path) -> InputFormat:
    """The format a file's extension implies when its input names none: .csv and .jsonl
    (also under .gz/.bz2/.xz: data.csv.gz), otherwise text."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    return InputFormat(_IMPLIED[suffixes[-1]]) if suffixes and suffixes[-1] in _IMPLIED else TEXT
