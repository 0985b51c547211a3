"""An mrjob job's steps as mrctl Mapper and Reducer classes, run through mrjob's own code.

`mrctl mrjob` (see mrctl.spec.mrjob_script) ships the user's script unchanged with a few lines
appended that make, for each streaming step, a StepMapper / StepCombiner / StepReducer bound to
the script's MRJob class. On the worker each task then does what an mrjob task does: it makes
the job with the task's options (`MRJob(['--step-num=N', '--mapper', ...])`), picks the step's
protocols with `pick_protocols`, and runs `map_pairs` — or, in a reduce or combine task, the
loop of `reduce_pairs` / `combine_pairs` over the step's own functions (MRStep), so that each
output is known by its key — so _init/_final, protocols, options and load_args are mrjob's.

Data between tasks is mrjob's encoded lines, as on Hadoop streaming: an mrctl key is the line
up to its first tab (what Hadoop sorts and partitions by), the value the rest of the line from
that tab on ("" when there is none), both as text. Keys group and sort as mrjob's runners sort
them (by the bytes before the tab), and with SORT_VALUES a key's values come sorted as whole
lines. The last step's pairs, written as key + value per line (the `lines` output format),
are exactly the lines mrjob writes.

A task runs in a directory holding the job's FILES, DIRS and file options (shipped inside the
module), with mrjob's jobconf variables (`mapreduce.map.input.file`, task ids) in its
environment; both are put back afterwards. Counters (`increment_counter`) become mrctl
counters of the attempt; `set_status(msg)` a "status" event of the run.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mrctl.io.shipped import shipped_dir
from mrctl.io.task_ids import tid_index
from mrctl.job import Mapper, Reducer, split_lines

Pair = tuple[str, str]


class MrjobJob:
    """The script's MRJob class with what every task of the run needs."""

    def __init__(self, cls: type, task_args: list[str], files: str, sort_values: bool) -> None:
        self.cls = cls
        self.task_args = list(task_args)
        self._files = files  # packed by mrctl.io.shipped.pack_files
        self.sort_values = sort_values

    def task(self, step_num: int, mrc: str, extra: Iterable[str] = ()) -> Any:
        """A job made as mrjob's runners make one for a task."""
        return self.cls([f"--step-num={step_num}", f"--{mrc}", *self.task_args, *extra])

    def working_dir(self) -> Path:
        """This process's copy of the job's files (made once, then reused by every task)."""
        return shipped_dir(self._files, "mrctl-mrjob")


class _Reporter(io.RawIOBase):
    """The job's stderr: mrjob's `reporter:` lines become the attempt's counters, the rest goes
    to the worker's own stderr."""

    def __init__(self, owner: Mapper | Reducer) -> None:
        self.owner, self.pending = owner, b""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.pending += bytes(data)
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self._line(line)
        return len(data)

    def _line(self, line: bytes) -> None:
        from mrjob.parse import parse_mr_job_stderr

        if not line.startswith(b"reporter:"):
            sys.stderr.write(line.decode("utf-8", "replace") + "\n")
            return
        parsed = parse_mr_job_stderr([line + b"\n"])
        for group, counters in parsed["counters"].items():
            for name, amount in counters.items():
                self.owner.increment_counter(group.replace(":", ";") or "(none)", name or "(none)", amount)
        for status in parsed["statuses"]:
            self.owner.set_status(status)


@contextlib.contextmanager
def _task_place(directory: Path, environ: dict[str, str]) -> Iterator[None]:
    """Run in `directory` with `environ` added, as mrjob's runners run a task; put back after."""
    saved_cwd, saved = os.getcwd(), {k: os.environ.get(k) for k in environ}
    os.chdir(directory)
    os.environ.update(environ)
    sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(directory))
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.chdir(saved_cwd)


def _jobconf(task: Mapper | Reducer, step_num: int, mrc: str) -> dict[str, str]:
    """mrjob's simulated jobconf for a task (as its local runners set it), in every Hadoop
    version's spelling, as environment variables."""
    from mrjob.compat import translate_jobconf_for_all_versions

    number = tid_index(task.task_id) if task.task_id else 0
    kind = "m" if mrc == "mapper" else "r"
    job_id = f"mrctl_{task.step_name}"
    values = {
        "mapreduce.job.id": job_id,
        "mapreduce.task.id": f"task_{job_id}_{kind}_{step_num:04d}{number}",
        "mapreduce.task.attempt.id": f"attempt_{job_id}_{kind}_{step_num:04d}{number}_{task.attempt - 1}",
        "mapreduce.task.ismap": str(mrc == "mapper").lower(),
        "mapreduce.task.partition": str(number),
    }
    if mrc == "mapper" and task.input_path:
        values["mapreduce.map.input.file"] = "file://" + task.input_path
    return {name.replace(".", "_"): value for key, value in values.items()
            for name in translate_jobconf_for_all_versions(key)}


def _as_pair(line: bytes) -> Pair:
    key, tab, rest = line.partition(b"\t")
    try:
        return key.decode("utf-8"), (tab + rest).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"mrctl carries mrjob's encoded lines as UTF-8 text, and a protocol wrote "
                         f"one that is not: {line[:120]!r}") from None


def _rest(value: Any) -> str:
    """A value's line part, without its order tag (see _StepTask.tagged)."""
    return value[-1] if type(value) is not str else value


AFTER_ALL = "\U0010ffff"  # the tag of what a task's _final yields: after every key's output


class _StepTask:
    """What the three roles share: the mrjob task object, its protocols and its place.

    Order tags: mrjob's runners hand a later step its input sorted by key across the whole
    previous step (reduce tasks hold contiguous key ranges), so a key's values reach the next
    reducer in the order of the keys that produced them. mrctl partitions by hash, so where a
    later step needs that order (a job without SORT_VALUES, output that feeds another step),
    each value travels as (producing key, index, ..., line part): the next step sorts values
    (sort_values) and so sees them in mrjob's order, and the tag is dropped before decoding.
    """

    job: MrjobJob
    step_num: int = 0
    mrc: str = "mapper"
    tagged: bool = False  # tag this task's output (see above)
    command: str | None = None  # *_cmd: the task is this program, lines in, lines out
    pre_filter: str | None = None  # *_pre_filter: the lines go through this shell command first

    def _shell(self, lines: Iterable[str]) -> list[str]:
        """The task's lines through its command or pre-filter, in the task's directory, run as
        mrjob's runners run them: a command split like a shell would (its exit status counts),
        a pre-filter as the head of a pipe, `sh -ex -c 'FILTER | python SCRIPT --mapper'`, whose
        status is the last command's: the filter's own is ignored (`grep` that matches nothing
        in a task exits 1, and the task still succeeds, with no lines)."""
        argv = shlex.split(self.command) if self.command else ["sh", "-e", "-c", f"{self.pre_filter} | cat"]
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        done = subprocess.run(argv, input=data, capture_output=True, check=False)
        if done.stderr:
            sys.stderr.write(done.stderr.decode("utf-8", "replace"))
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with status {done.returncode}: "
                               f"{done.stderr.decode('utf-8', 'replace')[-500:]}")
        return split_lines(done.stdout.decode("utf-8"))  # at "\n" only, as mrjob reads lines

    def _command_output(self, lines: Iterable[str], tag: tuple[Any, ...] | None = None) -> Iterator[tuple[str, Any]]:
        """A *_cmd task's output lines as pairs, tagged with `tag`, or else by their own key (a
        command's output cannot be traced to the key it came from)."""
        for index, line in enumerate(self._shell(lines)):
            key, rest = _as_pair(line.encode("utf-8"))
            yield (key, (*(tag if tag is not None else (key,)), index, rest)) if self.tagged else (key, rest)

    def _start(self: Any, extra: Iterable[str] = ()) -> None:
        """Make the task's MRJob (inside `_place`: its __init__ may read the shipped files)."""
        self._task = self.job.task(self.step_num, self.mrc, extra)
        self._task.sandbox(stdin=io.BytesIO(), stdout=io.BytesIO(), stderr=_Reporter(self))
        self._read, self._write = self._task.pick_protocols(self.step_num, self.mrc)

    def _place(self: Any) -> contextlib.AbstractContextManager[None]:
        return _task_place(self.job.working_dir(), _jobconf(self, self.step_num, self.mrc))

    def _encoded(self, pairs: Iterable[tuple[Any, Any]], tag: tuple[Any, ...] = ()) -> Iterator[tuple[str, Any]]:
        write = self._write
        if not self.tagged:
            for key, value in pairs:
                yield _as_pair(write(key, value))
            return
        for index, (key, value) in enumerate(pairs):
            line_key, rest = _as_pair(write(key, value))
            yield line_key, (*tag, index, rest)


class StepMapper(_StepTask, Mapper):
    """A step's mapper (with its mapper_init and mapper_final): `map_pairs` over the task's
    lines; a later step's pairs are gathered and mapped at the end of the task; a `mapper_raw`
    step runs once per whole input file, from a copy of it in the task's directory."""

    raw = False

    def setup(self) -> None:
        self._gathered: list[tuple[str, Any]] = []
        self._ran = False  # map_pairs ran (its _init and _final with it)
        # a first step's output that a later step reads is tagged by input order: task, index
        self._order = (tid_index(self.task_id) if self.task_id else 0,)

    def map_chunk(self, text: str) -> Iterator[Any]:
        self._ran = True
        lines: Iterable[str] = (line[:-1] if line.endswith("\r") else line for line in split_lines(text))
        with self._place():
            if self.command:
                yield from self._command_output(lines, self._order)
                return
            if self.pre_filter:
                lines = self._shell(lines)
            self._start()
            read = self._read
            yield from self._encoded(self._task.map_pairs((read(line.encode("utf-8")) for line in lines),
                                                          self.step_num), self._order)

    def map(self, *record: Any) -> Iterator[Any]:  # type: ignore[override]
        if not self.raw:
            self._gathered.append(record)
            return iter(())
        return self._map_raw(record[0])

    def _map_raw(self, text: str) -> Iterator[Any]:
        self._ran = True
        uri = self.input_path or "input"
        with self._place(), tempfile.TemporaryDirectory(dir=".") as tmp:
            copy = Path(tmp).resolve() / Path(uri).name
            copy.write_text(text, encoding="utf-8")
            self._start([str(copy), uri])
            yield from self._encoded(self._task.map_pairs(iter(()), self.step_num), self._order)

    def teardown(self) -> Iterator[Any] | None:
        # a later step's task, even one that got no pairs, runs _init and _final, as mrjob's do
        return None if self._ran else self._run_gathered()

    def _run_gathered(self) -> Iterator[Any]:
        """The step's mapper over the previous step's pairs, as map_pairs runs it; each output
        is tagged with the tag of the input it came from."""
        if self.command or self.pre_filter:  # lines through the command: map_chunk's way
            yield from self.map_chunk("".join(key + _rest(value) + "\n" for key, value in self._gathered))
            return
        with self._place():
            self._start()
            step = self._task.steps()[self.step_num]
            read, mapper = self._read, step["mapper"]
            if step["mapper_init"]:
                yield from self._encoded(step["mapper_init"]() or (), ("",))
            for key, value in self._gathered:
                tag = tuple(value[:-1]) if type(value) is not str else ()
                yield from self._encoded(mapper(*read((key + _rest(value)).encode("utf-8"))) or (), tag)
            if step["mapper_final"]:
                yield from self._encoded(step["mapper_final"]() or (), (AFTER_ALL,))


class _GroupedStep(_StepTask, Reducer):
    """A reduce or combine task: mrctl hands it the task's keys with their values (and an
    mrjob combiner every key: Reducer.combines_every_key), put in mrjob's order
    (_sorted_groups); at the end of the task the step's _init, then its reducer (or combiner)
    for each key, then its _final run, as in mrjob's `reduce_pairs` / `combine_pairs` (whose
    loop this is, so that each output is known by the key it came from, for its order tag)."""

    def setup(self) -> None:
        self._groups: list[tuple[str, list[Any]]] = []

    def reduce(self, key: str, values: list[Any]) -> Iterator[Pair]:  # type: ignore[override]
        self._groups.append((key, values))
        return iter(())

    def _sorted_groups(self) -> list[tuple[str, list[Any]]]:
        """The task's keys and values in the order mrjob's runners sort a task's input: by key
        (a stable sort: each key's values as they came), and by whole line with SORT_VALUES.
        A reduce task's come so already (mrctl sorts its keys, and its values by sort_values);
        a combine task's come in its mapper's order, so they are sorted here."""
        if self.mrc != "combiner":
            return self._groups
        groups = sorted(self._groups, key=lambda group: group[0])
        if self.job.sort_values:  # (values are then plain line parts: no order tags)
            groups = [(key, sorted(values)) for key, values in groups]
        return groups

    def teardown(self) -> Iterator[Any]:
        self._groups = self._sorted_groups()
        if self.command or self.pre_filter:
            yield from self._through_shell()
            return
        with self._place():
            self._start()
            step = self._task.steps()[self.step_num]
            run, init, final = step[self.mrc], step[f"{self.mrc}_init"], step[f"{self.mrc}_final"]
            read = self._read
            if init:
                yield from self._encoded(init() or (), ("",))
            # mrjob groups consecutive lines by their *decoded* key: keys whose lines differ
            # (1 and 1.0 in JSON, anything under a value-only protocol) may be one group
            decoded = ((key, read((key + _rest(v)).encode("utf-8"))) for key, values in self._groups for v in values)
            for _, group in itertools.groupby(decoded, key=lambda item: item[1][0]):
                line_key, (first_key, first_value) = next(group)
                values = itertools.chain((first_value,), (pair[1] for _, pair in group))  # noqa: B031 - once
                yield from self._encoded(run(first_key, values) or (), (line_key,))
            if final:
                yield from self._encoded(final() or (), (AFTER_ALL,))


    def _through_shell(self) -> Iterator[Any]:
        """A *_cmd task, or a pre-filter and then mrjob's reduce_pairs / combine_pairs."""
        lines = (key + _rest(v) for key, values in self._groups for v in values)
        with self._place():
            if self.command:
                yield from self._command_output(lines)
                return
            filtered = self._shell(lines)
            self._start()
            run = self._task.reduce_pairs if self.mrc == "reducer" else self._task.combine_pairs
            read = self._read
            first = filtered[0].partition("\t")[0] if filtered else ""
            yield from self._encoded(run((read(line.encode("utf-8")) for line in filtered), self.step_num), (first,))


class StepReducer(_GroupedStep):
    mrc = "reducer"


class StepCombiner(_GroupedStep):
    mrc = "combiner"
    combines_every_key = True  # mrjob's runners call a combiner for every key of a map task
