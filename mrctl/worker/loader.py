"""Loading a job's classes from source text received through Redis.

Only workers (and the inline backend) execute user
code; the master never does.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import linecache
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

from mrctl.errors import SpecError, bounded_message
from mrctl.job import IdentityMapper, Mapper, Reducer
from mrctl.spec.job_files import bundle


@dataclass(frozen=True)
class JobClasses:
    mapper: type[Mapper]
    reducer: type[Reducer] | None  # None for a map-only job (reducers: 0)
    combiner: type[Reducer] | None


# The run whose modules a worker holds (see load_module's `run`), and their names.
_run_modules: dict[str, list[str]] = {}


class _Siblings(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The job's sibling modules (mrctl.spec.job_files), served from source to `import NAME`.

    Last on sys.meta_path: a name the standard import path finds (the standard library, an
    installed package) is never the job's file, so a csv.py beside the job cannot replace csv.
    A sibling module is a plain `NAME` in sys.modules (as `import NAME` needs), marked with the
    hash of its source; a job with other siblings, or a worker's next run, drops the old ones.
    """

    def __init__(self) -> None:
        self.sources: dict[str, tuple[str, str]] = {}  # module name -> (file name shown, source)

    def provide(self, directory: str, files: Mapping[str, str]) -> None:
        self.sources = {Path(name).stem: (str(Path(directory, name)), text)
                        for name, text in files.items() if name.endswith(".py")}
        for name, module in list(sys.modules.items()):
            digest = getattr(module, _MARK, None)
            if digest is not None and digest != _digest(self.sources.get(name, ("", None))[1]):
                del sys.modules[name]
        if self not in sys.meta_path:
            sys.meta_path.append(self)

    def drop_all(self) -> None:
        for name, module in list(sys.modules.items()):
            if getattr(module, _MARK, None) is not None:
                del sys.modules[name]

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if path is not None or fullname not in self.sources:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=self.sources[fullname][0])

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None  # the default module

    def exec_module(self, module: ModuleType) -> None:
        filename, source = self.sources[module.__name__]
        module.__file__ = filename
        setattr(module, _MARK, _digest(source))
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), module.__dict__)


_MARK = "__mrctl_sibling__"
_siblings = _Siblings()


def _digest(source: str | None) -> str | None:
    return None if source is None else hashlib.sha256(source.encode()).hexdigest()


def load_module(filename: str, source: str, run: str | None = None,
                siblings: Mapping[str, str] | None = None) -> ModuleType:
    """Execute `source` as a fresh module named after a hash of it (no clash between jobs).

    `siblings` ({file name: source}, mrctl.spec.job_files.bundle) are the modules beside the job
    module that it may import by name, as if they were in its directory (which they were on
    the caller's host).

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
            _siblings.drop_all()
            _run_modules.clear()
            _run_modules[run] = []
        name += "_" + hashlib.sha256(run.encode()).hexdigest()[:8]
        if name not in sys.modules:
            _run_modules[run].append(name)
    _siblings.provide(str(Path(filename).parent), siblings or {})
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


def check_imports(modules: Iterable[Path]) -> None:
    """Execute each job module, as a worker does before its first task (`mrctl validate`): one
    that raises (a missing package, a typo at module level) is a SpecError `file:line: error`
    naming the module's line where it happened, instead of every task failing at run time."""
    modules = list(modules)
    siblings = bundle(modules)
    for path in modules:
        filename = str(path)
        try:
            load_module(filename, siblings[path.name], siblings=siblings)
        except (Exception, SystemExit) as exc:
            raise SpecError(f"{filename}:{_line_in(exc, filename)}: cannot import the job module: "
                            f"{bounded_message(exc)}") from None


def _line_in(exc: BaseException, filename: str) -> int | str:
    """The last line of `filename` in the traceback of `exc` (its import statement, if the
    error is in a module it imports)."""
    line: int | str = "?"
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


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
