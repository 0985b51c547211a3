"""The YAML job spec, validated into frozen dataclasses with precise errors.

    name: wordcount              # required; letters, digits, . _ -
    input: data/                 # required; file, dir (recursive), glob, {path, tag, format}, or a list
    job:                         # required
      module: wordcount.py       #   the job's Python file
      mapper: WordMapper         #   a Mapper subclass defined in it
      reducer: SumReducer        #   a Reducer subclass defined in it
      combiner: SumReducer       #   optional: a Reducer run map-side on each task's output
    reducers: 4                  # R, the number of reduce tasks (default 4)
    chunk_size: 4MiB             # bytes per map task: an integer or 512KiB, 4MiB, 1GB... (default 4MiB)
    workers: 2                   # or {count: 2, cpus: 1.5, memory: 512m, pids: 256} (docker limits)
                                 #   and placement: {constraints: [...], ...} (swarm; mrctl.spec.placement)
    output: wordcount.json       # or {path: ..., format: json|jsonl|tsv}; default <name>.json in the cwd
    task_timeout: 300            # seconds before an attempt is abandoned and retried
    max_attempts: 4              # attempts per task before the job fails
    encoding: replace            # undecodable input bytes: replace (counted) | strict (fail)
    speculative: false           # back up straggling map tasks near the end of the map phase
    bad_records: {policy: skip, max: 10}  # skip records whose map raises (default: fail)
    sort_values: false           # true: each key's values reach the reducer sorted (secondary sort)
    backend: docker              # docker | swarm | local | inline
    history: {keep_secrets: false}  # true: secret-looking params kept as given in the run history

Paths in the spec are relative to the spec file; paths given as flags are relative to the
current directory. Precedence: defaults < spec file < environment (MRCTL_BACKEND,
MRCTL_WORKERS) < flags. Every user mistake is a SpecError (exit 2) naming the file, the key,
the line and what was expected; the job module is parsed with `ast`, never executed here.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mrctl.errors import SpecError
from mrctl.io.formats import InputFormat
from mrctl.io.output_path import check_output_path
from mrctl.spec import job_files, mrjob_script, streaming
from mrctl.spec.bad_records import BadRecordPolicy, parse_bad_records
from mrctl.spec.doc import SpecDoc, bool_value, choice_value, int_value, number_value, string_value
from mrctl.spec.inputs import expand_inputs
from mrctl.spec.job_source import ClassInfo, classes_of, role_problem
from mrctl.spec.params import merge_params
from mrctl.spec.placement import Placement, parse_placement
from mrctl.spec.sizes import parse_size
from mrctl.spec.steps import StepGroup, StepParser, StepSpec

OUTPUT_FORMATS = ("json", "jsonl", "tsv", "csv", "lines", "text")
BACKENDS = ("docker", "swarm", "local", "inline")
ENCODINGS = ("replace", "strict")
TOP_KEYS = ("name", "input", "job", "reducers", "chunk_size", "workers", "output",
            "task_timeout", "max_attempts", "max_worker_restarts", "encoding", "speculative", "backend",
            "params", "bad_records", "sort_values", "steps", "module", "history", "files")
JOB_KEYS = ("module", "mapper", "reducer", "combiner", *streaming.COMMAND_KEYS)
WORKER_KEYS = ("count", "cpus", "memory", "pids", "placement")
OUTPUT_KEYS = ("path", "format")
HISTORY_KEYS = ("keep_secrets",)
@dataclass(frozen=True)
class WorkerLimits:
    """Container limits for each worker (docker backend only); None means no limit."""

    cpus: float | None = None
    memory: str | None = None  # docker notation: "512m", "2g"
    pids: int | None = None


@dataclass(frozen=True)
class JobSpec:
    name: str
    spec_path: Path  # absolute path of the YAML file
    # what each naming of an input reads (absolute, symlinks resolved): a file named twice is
    # here twice, read twice (mrctl.spec.inputs)
    inputs: tuple[Path, ...]
    module: Path  # absolute path of the job module (.py)
    mapper: str
    reducer: str | None  # None only for a map-only job (reducers: 0)
    combiner: str | None
    output_path: Path  # absolute
    output_format: str  # one of OUTPUT_FORMATS
    reducers: int = 4
    chunk_size: int = 4 * 1024 * 1024
    workers: int = 2
    limits: WorkerLimits = WorkerLimits()
    placement: Placement = Placement()  # swarm backend only
    task_timeout: float = 300.0
    max_attempts: int = 4
    # workers that may die before doing any work within a minute before the job fails (a crash
    # loop); workers that die on a task are always replaced (mrctl.backends.supervision)
    max_worker_restarts: int = 5
    encoding_errors: str = "replace"  # replace | strict
    speculative: bool = False  # start backup attempts of straggling map tasks
    backend: str = "docker"
    params: dict[str, Any] = field(default_factory=dict)  # plain values, `self.params` in job code
    input_names: tuple[str, ...] = ()  # each input as the user named it (default: its path)
    input_tags: tuple[str | None, ...] = ()  # each input's tag, if any
    input_formats: tuple[InputFormat, ...] = ()  # each input's format (default: all text)
    bad_records: BadRecordPolicy = BadRecordPolicy()  # records whose map raises: fail or skip
    sort_values: bool = False  # each key's values reach the reducer sorted, not in input order
    steps: tuple[StepGroup, ...] = ()  # a `steps:` spec; empty for a `job:` spec (see program)
    # the run history keeps secret-looking params as given, not as "***" (mrctl.observe.redaction)
    keep_secrets: bool = False

    @property
    def program(self) -> tuple[StepGroup, ...]:
        """The steps to run: `steps`, or the one step that module/mapper/reducer/... name."""
        if self.steps:
            return self.steps
        return (StepGroup((StepSpec("job", self.module, self.mapper, self.reducer, self.combiner,
                                    self.reducers, self.sort_values),)),)

    def input_of(self, index: int) -> tuple[str, str | None]:
        """(name, tag) of input `index` (a chunk's `input`): by position, not by path, since
        two names of one file are two inputs."""
        if not self.input_names:
            return str(self.inputs[index]), None
        return self.input_names[index], self.input_tags[index]


@dataclass(frozen=True)
class Overrides:
    """Settings from command-line flags; paths are relative to the current directory."""

    inputs: tuple[str, ...] = ()
    output: str | None = None
    workers: int | None = None
    reducers: int | None = None
    chunk_size: int | str | None = None
    backend: str | None = None
    task_timeout: float | None = None
    max_attempts: int | None = None
    max_worker_restarts: int | None = None
    encoding_errors: str | None = None
    speculative: bool | None = None
    params: tuple[tuple[str, Any], ...] = ()  # --param NAME=VALUE, in order


# Sane upper bounds, with the reason a user is shown when a value exceeds one.
CAPS = {
    "workers": (256, "each worker is a container or process on this host"),
    "reducers": (10_000, "every reduce task reads one blob from each map task"),
    "max_attempts": (100, "a task failing this often will not succeed"),
    "max_worker_restarts": (1000, "a crash loop is better stopped"),
    "task_timeout": (7 * 86_400, "a week; a longer task should be split"),
}


def _check_caps(doc: SpecDoc | None, settings: dict[str, Any], over: Overrides, environ: Mapping[str, str]) -> None:
    for key, (cap, why) in CAPS.items():
        if settings[key] > cap:
            flag = f"--{key.replace('_', '-')}"
            where = (flag if getattr(over, key) is not None else
                     "MRCTL_WORKERS" if key == "workers" and "MRCTL_WORKERS" in environ else None)
            message = f"{settings[key]} is more than {cap} ({why})"
            if where or doc is None:  # no doc: a JobSpec built in Python, under flags (override)
                raise SpecError(f"{where or key}: {message}")
            raise doc.error(key, message)

def _classes_in(doc: SpecDoc, module: Path, key: str) -> dict[str, ClassInfo]:
    try:
        return classes_of(module.read_text(encoding="utf-8"), str(module))
    except SyntaxError as exc:
        raise SpecError(f"{module}:{exc.lineno}: syntax error in the job module: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise doc.error(key, f"cannot read {module}: {exc}") from None


def _step_spec(doc: SpecDoc, key: str, entry: dict[str, Any], module_name: Any, number: int,
               settings: dict[str, Any]) -> StepSpec:
    """One step (the `job:` section, or an entry of `steps:`), its classes checked against the
    module's source. A step without a reducer is map-only; a later step may omit its mapper."""
    module_key = f"{key}.module" if "module" in entry or key == "job" else "module"
    if module_name is None:
        raise doc.error(module_key, "missing (required: give module: at the top level or in the step)")
    module = (doc.path.parent / string_value(doc, module_key, module_name)).resolve()
    if not module.is_file():
        raise doc.error(module_key, f"no such file: {module}")
    classes = _classes_in(doc, module, module_key)
    names: dict[str, str | None] = {}
    for role in ("mapper", "reducer", "combiner"):
        if entry.get(role) is None:
            if role == "mapper" and number == 1:
                raise doc.error(f"{key}.mapper", "missing (required)")
            names[role] = None
            continue
        name = string_value(doc, f"{key}.{role}", entry[role])
        if name not in classes:
            raise doc.error(f"{key}.{role}", f"no class {name!r} in {module.name} "
                            f"(classes there: {', '.join(classes) or 'none'})")
        if problem := role_problem(classes[name], role, module):
            raise doc.error(f"{key}.{role}", problem)
        names[role] = name
    if key == "job":  # the one-step form: reducers and sort_values are the spec's own settings
        reducers, sort_values, params = settings["reducers"], settings["sort_values"], {}
    else:
        reducers = int_value(doc, f"{key}.reducers", entry.get("reducers", settings["reducers"]), 0)
        if reducers > CAPS["reducers"][0]:
            raise doc.error(f"{key}.reducers", f"{reducers} is more than {CAPS['reducers'][0]} "
                            f"({CAPS['reducers'][1]})")
        sort_values = bool_value(doc, f"{key}.sort_values", entry.get("sort_values", settings["sort_values"]))
        try:  # a --param flag wins over a step's own params, as over the spec's
            params = {k: v for k, v in merge_params(entry.get("params")).items() if k not in settings["flag_params"]}
        except SpecError as exc:
            raise doc.error(f"{key}.params", str(exc)) from None
        if names["reducer"] is None:
            reducers = 0
    if reducers and names["reducer"] is None:
        raise doc.error(f"{key}.reducer", "missing (required unless reducers: 0, a map-only job)")
    name = "job" if key == "job" else string_value(doc, f"{key}.name", entry.get("name", f"step{number}"))
    return StepSpec(name, module,
                    names["mapper"], names["reducer"], names["combiner"], reducers, sort_values, params)


def _program(doc: SpecDoc, data: dict[str, Any], settings: dict[str, Any],
             files: str = "") -> tuple[StepGroup, ...]:
    """The job's steps: `job:` (one step) or `steps:` (several, maybe repeated), never both.
    `files`: the spec's `files:`, packed, for its streaming steps' modules."""
    if ("job" in data) == ("steps" in data):
        raise doc.error("job", "give either job: (one MapReduce step) or steps: (a list of them)")
    if "job" in data:
        job = data["job"]
        if not isinstance(job, dict):
            raise doc.error("job", "expected a mapping with module, mapper, reducer (and combiner)")
        doc.check_keys(job, JOB_KEYS, "job.")
        if "module" in data:
            raise doc.error("module", "a top-level module: goes with steps:; with job: give job.module")
        if streaming.is_streaming(job):
            job = streaming.step_entry(doc, "job", job, files, first=True)
        return (StepGroup((_step_spec(doc, "job", job, doc.require(job, "module", "job."), 1, settings),)),)

    def step(key: str, entry: dict[str, Any], number: int) -> StepSpec:
        if streaming.is_streaming(entry):
            entry = streaming.step_entry(doc, key, entry, files, first=number == 1)
        return _step_spec(doc, key, entry, entry.get("module", data.get("module")), number, settings)

    parser = StepParser(step, doc.error)
    program = parser.parse(data["steps"])
    modules: dict[str, Path] = {}
    for step in (s for g in program for s in g.steps):
        if modules.setdefault(step.module.name, step.module) != step.module:
            raise doc.error("steps", f"two job modules named {step.module.name} ({modules[step.module.name]} "
                            f"and {step.module}); give them different file names")
    return program


def _workers_section(doc: SpecDoc, value: Any) -> tuple[int, WorkerLimits, Placement]:
    if not isinstance(value, dict):
        return int_value(doc, "workers", value), WorkerLimits(), Placement()
    doc.check_keys(value, WORKER_KEYS, "workers.")
    count = int_value(doc, "workers.count", value.get("count", 2))
    cpus = number_value(doc, "workers.cpus", value["cpus"]) if value.get("cpus") is not None else None
    memory = value.get("memory")
    if memory is not None and not re.fullmatch(r"\d+[bkmg]?", str(memory).lower()):
        raise doc.error("workers.memory", f"expected a Docker memory size such as 512m or 2g, got {memory!r}")
    pids = int_value(doc, "workers.pids", value["pids"], 16) if value.get("pids") is not None else None
    placement = parse_placement(doc, value["placement"]) if value.get("placement") is not None else Placement()
    return count, WorkerLimits(cpus, str(memory).lower() if memory is not None else None, pids), placement


def _output_section(doc: SpecDoc, value: Any, name: str, default: str = "json") -> tuple[Path, str]:
    """The output's path and format: `format:`, else its suffix, else `default` (an mrjob
    script's lines whatever the suffix: its values are encoded line parts)."""
    if value is None:
        return Path.cwd() / f"{name}.{_SUFFIX.get(default, default)}", default
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, dict):
        raise doc.error("output", "expected a path or a mapping {path, format}")
    doc.check_keys(value, OUTPUT_KEYS, "output.")
    fmt = value.get("format")
    path = value.get("path")
    if fmt is None:
        fmt = default if default == "lines" else _format_of(path) or default
    fmt = choice_value(doc, "output.format", fmt, OUTPUT_FORMATS)
    if path is None:
        return Path.cwd() / f"{name}.{_SUFFIX.get(fmt, fmt)}", fmt
    return (doc.path.parent / string_value(doc, "output.path", path)).resolve(), fmt


def _history_section(doc: SpecDoc, value: Any) -> bool:
    """`history: {keep_secrets: true}`: whether the run history keeps secret params."""
    if not isinstance(value, dict):
        raise doc.error("history", "expected a mapping such as {keep_secrets: true}")
    doc.check_keys(value, HISTORY_KEYS, "history.")
    return bool_value(doc, "history.keep_secrets", value.get("keep_secrets", False))


_SUFFIX = {"lines": "txt", "text": "txt"}  # a default output's file name


def _format_of(path: str | None) -> str | None:
    suffix = Path(path).suffix.lstrip(".") if path else ""
    return suffix if suffix in OUTPUT_FORMATS else None


def load_spec(path: str | Path, overrides: Overrides | None = None,
              environ: Mapping[str, str] | None = None) -> JobSpec:
    """Read, validate and resolve a job spec: defaults < file < environment < flags."""
    environ = os.environ if environ is None else environ
    over = overrides or Overrides()
    doc = SpecDoc(Path(path).resolve(), str(path))
    data = doc.data
    doc.check_keys(data, TOP_KEYS)
    name = string_value(doc, "name", doc.require(data, "name"))
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise doc.error("name", f"expected letters, digits, '.', '_' or '-', got {name!r}")
    workers, limits, placement = _workers_section(doc, data.get("workers", 2))
    job_entry = data.get("job")
    mrjob = mrjob_script.from_spec(doc, job_entry) if isinstance(job_entry, dict) and "mrjob" in job_entry else None
    commands = streaming.uses_streaming(data)  # Hadoop Streaming's key<TAB>value lines, by default
    output_path, output_format = _output_section(doc, data.get("output"), name,
                                                 "lines" if mrjob else "text" if commands else "json")
    settings: dict[str, Any] = {
        "reducers": int_value(doc, "reducers", data.get("reducers", 4), 0),
        "chunk_size": parse_size(data["chunk_size"], f"{doc.shown}:{doc.lines.get('chunk_size')}: chunk_size")
        if "chunk_size" in data else 4 << 20,
        "task_timeout": number_value(doc, "task_timeout", data.get("task_timeout", 300)),
        "max_attempts": int_value(doc, "max_attempts", data.get("max_attempts", 4)),
        "max_worker_restarts": int_value(doc, "max_worker_restarts", data.get("max_worker_restarts", 5), 0),
        "encoding_errors": choice_value(doc, "encoding", data.get("encoding", "replace"), ENCODINGS),
        "speculative": bool_value(doc, "speculative", data.get("speculative", False)),
        "sort_values": bool_value(doc, "sort_values", data.get("sort_values", False)),
        "backend": choice_value(doc, "backend", data.get("backend", "docker"), BACKENDS),
        "workers": workers,
        "keep_secrets": _history_section(doc, data["history"]) if "history" in data else False,
    }
    shipped = streaming.files_of(doc, data["files"]) if "files" in data else ""
    if "files" in data and not commands:
        raise doc.error("files", "files: ships files beside streaming commands (mapper_cmd, reducer_cmd, "
                        "combiner_cmd); a Python job's modules travel by themselves")
    raw = doc.require(data, "input") if not over.inputs else data.get("input")
    entries = raw if isinstance(raw, list) else [raw]
    if over.inputs:  # a single input mapping lends its tag and format to the new paths
        lend = entries[0] if len(entries) == 1 and isinstance(entries[0], dict) else {}
        entries, base, where = [{**lend, "path": p} for p in over.inputs], Path.cwd(), "--input"
    else:
        if not entries:
            raise doc.error("input", "expected a path, directory or glob, or a list of them, got []")
        base, where = doc.path.parent, f"{doc.shown}:{doc.lines['input']}: input"
    if mrjob:  # lines as mrjob reads them (a .csv too), or each file whole for mapper_raw
        fmt = "whole_file" if mrjob.raw_input else "text"
        entries = [{"format": fmt, **(e if isinstance(e, dict) else {"path": e})} for e in entries]
    files = expand_inputs(entries, base, where)
    if mrjob and mrjob.raw_input:  # mapper_raw's uri: the absolute path, as in mrjob's input manifest
        files = tuple(replace(f, name=os.path.abspath(os.path.join(base, f.name))) for f in files)
    inputs = tuple(f.path for f in files)
    patterns = [e["path"] if isinstance(e, dict) else e for e in entries]
    for key, parse in (("params", lambda v: merge_params(v, over.params)), ("bad_records", parse_bad_records)):
        try:
            settings[key] = parse(data.get(key))
        except SpecError as exc:
            raise doc.error(key, str(exc)) from None
    _apply_environment(settings, environ)
    _apply_flags(settings, over)
    _check_caps(doc, settings, over, environ)
    output_where = "--output" if over.output else f"{doc.shown}:{doc.lines.get('output', 1)}: output"
    if over.output:
        output_path = (Path.cwd() / over.output).resolve()
        output_format = _format_of(over.output) or output_format
    check_output_path(output_path, inputs, patterns, base, output_where)
    if mrjob:
        if "steps" in data:
            raise doc.error("job", "give either job: (here an mrjob script, with its own steps) or steps:")
        settings["sort_values"] = settings["sort_values"] or mrjob.sort_values
        program = mrjob.program(settings["reducers"])
    else:
        program = _program(doc, data, {**settings, "flag_params": {name for name, _ in over.params}}, shipped)
        # the modules beside them that they import travel too: readable, parsable, bounded
        job_files.bundle(dict.fromkeys(s.module for g in program for s in g.steps))
    for group in program:  # a repeat count that names a param: that param must be a count
        if isinstance(group.repeat, str):
            try:
                group.times(settings["params"])
            except SpecError as exc:
                raise doc.error("steps", str(exc)) from None
    if not program[-1].steps[-1].reducers and output_format == "json":
        what = "a map-only job (reducers: 0)" if "job" in data else "a last step without a reducer (map-only)"
        raise SpecError(f"{output_where}: {what} keeps every pair in input order, "
                        "repeated keys included, which one JSON object cannot; write .jsonl, .tsv or .csv")
    first = program[0].steps[0]
    return JobSpec(name=name, spec_path=doc.path, inputs=inputs, module=first.module,
                   mapper=first.mapper or "", reducer=first.reducer, combiner=first.combiner,
                   output_path=output_path, output_format=output_format, limits=limits,
                   placement=placement,
                   input_names=tuple(f.name for f in files), input_tags=tuple(f.tag for f in files),
                   input_formats=tuple(f.format for f in files),
                   steps=program if "steps" in data or mrjob else (), **settings)


def override(spec: JobSpec, over: Overrides) -> JobSpec:
    """An already loaded spec under flags, checked as load_spec checks them (inputs and output
    stay the spec's: give those with a spec path)."""
    settings = {key: getattr(spec, key) for key in (*CAPS, "chunk_size", "backend", "encoding_errors",
                                                     "speculative")}
    _apply_flags(settings, over)
    _check_caps(None, settings, over, {})
    return replace(spec, **settings, params=merge_params(spec.params, over.params))


def _apply_environment(settings: dict[str, Any], environ: Mapping[str, str]) -> None:
    if "MRCTL_BACKEND" in environ:
        settings["backend"] = choice_value(None, "", environ["MRCTL_BACKEND"], BACKENDS, "MRCTL_BACKEND")
    if "MRCTL_WORKERS" in environ:
        value = environ["MRCTL_WORKERS"]
        if not value.isdigit() or int(value) < 1:
            raise SpecError(f"MRCTL_WORKERS: expected an integer >= 1, got {value!r}")
        settings["workers"] = int(value)


def _apply_flags(settings: dict[str, Any], over: Overrides) -> None:
    for key in ("workers", "reducers", "max_attempts", "max_worker_restarts"):
        value = getattr(over, key)
        if value is not None:
            least = 0 if key in ("max_worker_restarts", "reducers") else 1
            if value < least:
                raise SpecError(f"--{key.replace('_', '-')}: expected an integer >= {least}, got {value}")
            settings[key] = value
    if over.chunk_size is not None:
        settings["chunk_size"] = parse_size(over.chunk_size, "--chunk-size")
    if over.task_timeout is not None:
        if not 0 < over.task_timeout < math.inf:
            raise SpecError(f"--task-timeout: expected a finite number of seconds > 0, got {over.task_timeout}")
        settings["task_timeout"] = over.task_timeout
    if over.backend is not None:
        settings["backend"] = choice_value(None, "", over.backend, BACKENDS, "--backend")
    if over.encoding_errors is not None:
        settings["encoding_errors"] = choice_value(None, "", over.encoding_errors, ENCODINGS, "--encoding")
    if over.speculative is not None:
        settings["speculative"] = over.speculative

