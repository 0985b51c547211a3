"""The records of one chunk in its input's format (worker side; the inline backend too).

`ChunkRecords(text, fmt)` yields `(line, raw)` pairs, `line` being the 0-based line of the
chunk where the record starts, and `parse(raw, line)` turns a raw record into what
`Mapper.map` receives, raising BadRecord for one that cannot be parsed. The two steps are
apart so that a bad-record policy can skip one record and go on with the next.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import zlib
from collections.abc import Iterator
from typing import Any

from mrctl.io.formats import BadRecord, ChunkFormat, CorruptInput

_DECOMPRESS = {"gz": gzip.decompress, "bz2": bz2.decompress, "xz": lzma.decompress}


def decompress(data: bytes, compression: str) -> bytes:
    """A whole compressed file's content; CorruptInput if it is truncated or not in the format
    its extension names."""
    try:
        return _DECOMPRESS[compression](data)
    except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as exc:
        raise CorruptInput(f"cannot decompress this .{compression} file: {exc}") from None


def folds_crlf(fmt: ChunkFormat) -> bool:
    """Whether "\\r\\n" is read as "\\n" before parsing: not for CSV (the csv module handles
    line endings itself, keeping those inside quoted fields) nor for delimited records (their
    delimiter is matched byte for byte, as the master matched it when it cut the chunks)."""
    return fmt.kind not in ("csv", "records")


class ChunkRecords:
    """Iterate a chunk's raw records; `parse` each into the value `map` receives."""

    def __init__(self, text: str, fmt: ChunkFormat) -> None:
        self.text, self.fmt, self.header = text, fmt, fmt.header

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        kind = self.fmt.kind
        if kind == "whole_file":
            return iter([(0, self.text)])
        if kind == "csv":
            return self._csv_rows()
        if kind == "records":
            return self._delimited(self.fmt.delimiter or "\n\n")
        return self._lines(skip_blank=kind == "jsonl")

    def parse(self, raw: Any, line: int) -> Any:
        kind = self.fmt.kind
        if kind == "jsonl":
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise BadRecord(f"invalid JSON: {exc.msg} (column {exc.colno}): {_short(raw)}", line) from None
        if kind == "csv":
            header = self.header or ()
            if len(raw) != len(header):
                raise BadRecord(f"CSV row has {len(raw)} fields, the header has {len(header)}: "
                                f"{_short(raw)}", line)
            return dict(zip(header, raw, strict=True))
        return raw

    def _lines(self, skip_blank: bool) -> Iterator[tuple[int, str]]:
        lines = self.text.split("\n")
        if lines[-1] == "":
            lines.pop()
        for index, line in enumerate(lines):
            if not (skip_blank and not line.strip()):
                yield index, line

    def _csv_rows(self) -> Iterator[tuple[int, list[str]]]:
        """Rows as the csv module reads them (blank lines skipped, like csv.DictReader); the
        first row is the header when the master did not send one (compressed files)."""
        reader = csv.reader(io.StringIO(self.text, newline=""))
        while True:
            line = reader.line_num
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise BadRecord(f"CSV: {exc}", line) from None
            if not row:
                continue
            if self.header is None:
                self.header = tuple(row)
                continue
            yield line, row

    def _delimited(self, delimiter: str) -> Iterator[tuple[int, str]]:
        """The text between delimiters, without the line breaks around it; empty ones skipped
        (a delimiter at the end of the file, or repeated, makes no record)."""
        text, pos, line = self.text, 0, 0
        while pos < len(text):
            found = text.find(delimiter, pos)
            end = len(text) if found < 0 else found
            piece = text[pos:end]
            record = piece.strip("\r\n")
            if record:
                lead = len(piece) - len(piece.lstrip("\r\n"))
                yield line + piece.count("\n", 0, lead), record
            line += piece.count("\n")
            if found < 0:
                break
            line += delimiter.count("\n")
            pos = found + len(delimiter)


def _short(obj: Any, limit: int = 120) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "…"
