"""Loading a job's classes from source text received through Redis.

Only workers (and the inline backend) execute user
code; the master never does.
"""

from __future__ import annotations

import hashlib
import linecache
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from mrctl.job import IdentityMapper, Mapper, Reducer


@dataclass(frozen=True)
class JobClasses:
    mapper: type[Mapper]
    reducer: type[Reducer] | None  # None for a map-only job (reducers: 0)
    combiner: type[Reducer] | None


# The run whose modules a worker holds (see load_module's `run`), and their names.
_run_modules: dict[str, list[str]] = {}


def load_module(filename: str, source: str, run: str | None = None) -> ModuleType:
    """Execute `source` as a fresh module named after a hash of it (no clash between jobs).

    With `run` (a worker's, which serves one run at a time), the module is one of that run's:
    loading one for another run first drops every module of the previous run, so that a warm
    cluster's next run — same code or not — starts from freshly executed modules, as on a
    cluster of its own, and a long-lived worker does not keep every job's module.

    Nothing is written to disk: the source is registered with linecache under `filename`, so
    tracebacks still show the user's file name, line numbers and lines.
    """
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    name = f"mrctl_job_{Path(filename).stem}_{digest}"
    if run is not None:
        if run not in _run_modules:
            for previous in _run_modules.values():
                for old in previous:
                    sys.modules.pop(old, None)
            _run_modules.clear()
            _run_modules[run] = []
        name += "_" + hashlib.sha256(run.encode()).hexdigest()[:8]
        if name not in sys.modules:
            _run_modules[run].append(name)
    if name in sys.modules:
        return sys.modules[name]
    module = ModuleType(name)
    module.__file__ = filename
    code = compile(source, filename, "exec")
    # mtime None: linecache.checkcache() keeps the entry instead of looking for the file.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def job_classes(module: ModuleType, mapper: str | None, reducer: str | None, combiner: str | None) -> JobClasses:
    """The named classes, checked to be Mapper / Reducer subclasses; no mapper is the identity
    (a later step's pairs pass through)."""
    return JobClasses(
        _class(module, mapper, Mapper) if mapper else IdentityMapper,
        _class(module, reducer, Reducer) if reducer else None,
        _class(module, combiner, Reducer) if combiner else None,
    )


def _class(module: ModuleType, name: str, base: type) -> type:
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{name} in {module.__file__} is not a subclass of mrctl.{base.__name__}")
    return cls
