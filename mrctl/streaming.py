"""Streaming jobs: a mapper, combiner or reducer that is any program, as Hadoop Streaming runs
them. A spec names the commands (`job: {mapper_cmd: ..., reducer_cmd: ...}`, or per step) and
mrctl.spec.streaming writes a job module whose classes subclass these, so a streaming step is an
ordinary mrctl step: the same backends, retries, fencing, chaos, timeline and history.

The contract (Hadoop Streaming's):

- a command is split like a shell would split it (`shlex`), and run without a shell, in a
  directory holding the spec's `files:` (executable), once per task;
- the mapper reads the task's input records on stdin, one per line (a text input's lines; a
  CSV row's or JSON object's values, an earlier step's key and value, joined by tabs; a record
  whose fields would break that, a line break in one or a tab in its key, fails the task);
- every line it writes is a pair: the text before the first tab is the key, the rest the value
  (a line without a tab is a key with an empty value); keys and values are text;
- the reducer (and the combiner) reads its task's `key<TAB>value` lines sorted by key, each
  key's lines together, and writes lines as the mapper does;
- a `reporter:counter:GROUP,NAME,AMOUNT` line on stderr adds to a counter (exactly once, as a
  Python job's counters: only a committed attempt's count), `reporter:status:MESSAGE` sets the
  task's status; the rest of stderr goes to the worker's log, bounded;
- a non-zero exit status fails the attempt, which is retried as any failed attempt is.

Output is UTF-8 text; a line that is not fails the attempt, naming the line, rather than being
changed silently.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from mrctl.io.shipped import shipped_dir
from mrctl.job import Mapper, Reducer, _short

log = logging.getLogger(__name__)

MAX_STDERR_BYTES = 64 << 10  # of a task's stderr that reaches the worker's log


class CommandFailed(RuntimeError):
    """A streaming command could not start, exited with a non-zero status, or wrote a line that
    is not UTF-8."""


def _text(value: Any) -> str:  # as mrctl.io.output writes a value (which job modules do not import)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class _Command:
    """What the three roles share: the command, the files it runs beside, its stderr."""

    command: str = ""  # set by the job module mrctl.spec.streaming writes
    files: str = ""  # the spec's `files:`, packed (mrctl.io.shipped)
    role = "mapper"

    def _run(self, data: bytes) -> Iterator[tuple[str, str]]:
        """The command's output lines for `data` on stdin, as (key, value) pairs."""
        argv = shlex.split(self.command)
        cwd = shipped_dir(self.files, "mrctl-streaming", executable=True) if self.files else None
        try:
            done = subprocess.run(argv, input=data, capture_output=True, cwd=cwd, check=False)
        except OSError as exc:
            raise CommandFailed(f"{self.role}_cmd {self.command!r}: cannot run {argv[0]}: "
                                f"{exc.strerror or exc}") from None
        said = self._report(done.stderr)
        if done.returncode != 0:
            raise CommandFailed(f"{self.role}_cmd {self.command!r} exited with status {done.returncode}"
                                + (f"; its stderr ends: {said[-1000:]}" if said else ""))
        lines = done.stdout.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        for number, line in enumerate(lines, 1):
            if line.endswith(b"\r"):  # a \r\n line end, as Hadoop's line reader takes it
                line = line[:-1]
            try:
                key, _, value = line.decode("utf-8").partition("\t")
            except UnicodeDecodeError:
                raise CommandFailed(f"{self.role}_cmd {self.command!r}: output line {number} is not UTF-8 "
                                    f"text: {line[:120]!r}") from None
            yield key, value

    def _report(self, stderr: bytes) -> str:
        """Counters and statuses from `reporter:` lines; the other lines to the worker's log
        (bounded), and returned (for the message of a failed attempt)."""
        rest = []
        for line in stderr.decode("utf-8", "replace").splitlines():
            if counter := _COUNTER.fullmatch(line):
                group, name, amount = counter.groups()  # mrctl's counter names hold no ":"
                self.increment_counter(group.replace(":", ";") or "(none)", name.replace(":", ";") or "(none)",
                                       int(amount))  # type: ignore[attr-defined]
                continue
            if line.startswith("reporter:counter:"):
                log.warning("%s_cmd: not a counter (reporter:counter:GROUP,NAME,AMOUNT): %s", self.role, line)
            elif line.startswith("reporter:status:"):
                self.set_status(line[len("reporter:status:"):])  # type: ignore[attr-defined]
                continue
            rest.append(line)
        said = "\n".join(rest)
        if said:
            shown = said if len(said) <= MAX_STDERR_BYTES else said[-MAX_STDERR_BYTES:]
            sys.stderr.write(shown + "\n")
        return said


_COUNTER = re.compile(r"reporter:counter:([^,]*),(.*),\s*([+-]?[0-9]+)\s*", re.ASCII)


def _lines(records: Iterable[tuple[Any, ...]]) -> bytes:
    """Records as the command's input lines: fields joined by tabs (a CSV row's or JSON object's
    values in order). A field that would change the lines a command reads (a line break, or a
    tab in the first field, the key) fails the task, naming the record."""
    out = []
    for record in records:
        fields = list(record[0].values()) if len(record) == 1 and isinstance(record[0], dict) else record
        texts = [_text(field) for field in fields]
        if any("\n" in t or "\r" in t for t in texts) or (texts and "\t" in texts[0]):
            raise CommandFailed(f"the record {_short(record)} holds a line break, or a tab in its key: as "
                                "key<TAB>value lines it would reach the command as other records")
        out.append("\t".join(texts) + "\n")
    return "".join(out).encode("utf-8")


class CommandMapper(_Command, Mapper):
    """A map task through `command`: a text input's chunk goes to it as it is; records (CSV,
    JSON lines, an earlier step's pairs) go at the end of the task, as tab-joined lines."""

    def setup(self) -> None:
        self._records: list[tuple[Any, ...]] = []

    def map_chunk(self, text: str) -> Iterator[tuple[str, str]]:
        data = text.encode("utf-8")
        if not data:  # an empty file: no record, no command (as for an empty task of records)
            return iter(())
        if not data.endswith(b"\n"):
            data += b"\n"
        return self._run(data)

    def map(self, *record: Any) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        self._records.append(record)
        return iter(())

    def teardown(self) -> Iterator[tuple[str, str]] | None:
        return self._run(_lines(self._records)) if self._records else None


class CommandReducer(_Command, Reducer):
    """A reduce task through `command`: its keys (sorted) with their values as `key<TAB>value`
    lines, run once at the end of the task, even for a task that got no key (as Hadoop runs a
    reducer over an empty partition)."""

    role = "reducer"

    def setup(self) -> None:
        self._groups: list[tuple[Any, list[Any]]] = []

    def reduce(self, key: Any, values: list[Any]) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        self._groups.append((key, values))
        return iter(())

    def teardown(self) -> Iterator[tuple[str, str]] | None:
        if self.combines_every_key and not self._groups:  # Hadoop runs no combiner without records
            return None
        # by the keys' text, as the command compares them (a reduce task's come in mrctl's order,
        # which sorts numbers as numbers, a combiner's in its mapper's order); stable, so each
        # key's values keep their order, and keys of one text (1 and "1") come together
        groups = sorted(self._groups, key=lambda group: _text(group[0]))
        return self._run(_lines((key, value) for key, values in groups for value in values))


class CommandCombiner(CommandReducer):
    """A combine task through `command`, over every key of its map task."""

    role = "combiner"
    combines_every_key = True
