"""Streaming steps in a spec: `mapper_cmd`, `reducer_cmd`, `combiner_cmd` (in `job:` or in a
step of `steps:`) and the spec's `files:`, which are shipped to every task's directory.

Each streaming step becomes an ordinary step whose job module mrctl writes: a few lines that
bind the commands (and the packed files) to mrctl.streaming's classes, content-addressed under
mrctl's cache directory, as an mrjob script's module is (mrctl.spec.mrjob_script). So the
master, the workers, the history and the timeline see a Python job module like any other.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any

from mrctl.host.dirs import cache_text
from mrctl.io.shipped import pack_files

COMMAND_KEYS = {"mapper_cmd": "mapper", "reducer_cmd": "reducer", "combiner_cmd": "combiner"}
CLASSES = {"mapper": "CommandMapper", "reducer": "CommandReducer", "combiner": "CommandCombiner"}


def is_streaming(entry: Any) -> bool:
    return isinstance(entry, dict) and any(key in entry for key in COMMAND_KEYS)


def uses_streaming(data: dict[str, Any]) -> bool:
    """Whether the spec's `job:` or any step (at any depth of `steps:`) names a command."""
    def walk(value: Any) -> bool:
        if isinstance(value, list):
            return any(walk(v) for v in value)
        return is_streaming(value) or (isinstance(value, dict) and walk(value.get("steps")))
    return is_streaming(data.get("job")) or walk(data.get("steps"))


def files_of(doc: Any, value: Any) -> str:
    """The spec's `files:` (paths relative to the spec), packed; each reaches a task's directory
    under its own file name."""
    where = f"{doc.shown}:{doc.lines.get('files', 1)}: files"
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise doc.error("files", f"expected a list of file paths, got {value!r}")
    chosen: dict[str, Path] = {}
    for item in value:
        path = (doc.path.parent / item).resolve()
        if not path.is_file():
            raise doc.error("files", f"no such file: {path}")
        if chosen.setdefault(path.name, path) != path:
            raise doc.error("files", f"two files named {path.name} ({chosen[path.name]} and {path}): "
                            "each lands in the task's directory under its own name")
    return pack_files(dict(chosen), {}, where)


def step_entry(doc: Any, key: str, entry: dict[str, Any], files: str, first: bool) -> dict[str, Any]:
    """`entry` with its commands replaced by the module mrctl writes for them and its classes
    (module, mapper, reducer, combiner), for the spec's ordinary step checks."""
    taken = [k for k in ("module", "mapper", "reducer", "combiner") if k in entry]
    if taken:
        raise doc.error(f"{key}.{taken[0]}", "a streaming step gives commands (mapper_cmd, reducer_cmd, "
                        "combiner_cmd), not a module and classes")
    if first and "mapper_cmd" not in entry:
        raise doc.error(f"{key}.mapper_cmd", "missing (a first step reads the input: it needs a mapper)")
    commands = {}
    for name, role in COMMAND_KEYS.items():
        if name not in entry:
            continue
        command = entry[name]
        if not isinstance(command, str) or not command.strip():
            raise doc.error(f"{key}.{name}", f"expected a command line, got {command!r}")
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise doc.error(f"{key}.{name}", f"cannot split {command!r} as a shell would: {exc}") from None
        if not argv:
            raise doc.error(f"{key}.{name}", f"expected a command line, got {command!r}")
        commands[role] = command
    module = _write(module_text(commands, files))
    rest = {k: v for k, v in entry.items() if k not in COMMAND_KEYS}
    return {**rest, "module": str(module), **{role: f"Streaming{role.title()}" for role in commands}}


def module_text(commands: dict[str, str], files: str) -> str:
    lines = ['"""A streaming step\'s job module, written by mrctl (mrctl.spec.streaming)."""', "",
             "from mrctl import streaming", "", f"FILES = {files!r}"]
    for role, command in commands.items():
        lines += ["", "", f"class Streaming{role.title()}(streaming.{CLASSES[role]}):",
                  f"    command, files = {command!r}, FILES"]
    return "\n".join(lines) + "\n"


def _write(text: str) -> Path:
    """The module, content-addressed under the cache directory (its name unique to its text, so
    that two steps' modules never share a name)."""
    return cache_text(f"streaming/streaming_{hashlib.sha256(text.encode()).hexdigest()[:16]}.py", text)
