"""Loading a job's classes from source text received through Redis.

The source is written to a private temp directory first so that tracebacks show the user's
file name, line numbers and source lines. Only workers (and the inline backend) execute user
code; the master never does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from mrctl.job import Mapper, Reducer


@dataclass(frozen=True)
class JobClasses:
    mapper: type[Mapper]
    reducer: type[Reducer]
    combiner: type[Reducer] | None


def load_module(filename: str, source: str) -> ModuleType:
    """Import `source` as a fresh module named after a hash of it (no clash between jobs)."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    name = f"mrctl_job_{Path(filename).stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    folder = Path(tempfile.gettempdir()) / f"mrctl-job-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / Path(filename).name
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def job_classes(module: ModuleType, mapper: str, reducer: str, combiner: str | None) -> JobClasses:
    """The named classes, checked to be Mapper / Reducer subclasses."""
    return JobClasses(
        _class(module, mapper, Mapper),
        _class(module, reducer, Reducer),
        _class(module, combiner, Reducer) if combiner else None,
    )


def _class(module: ModuleType, name: str, base: type) -> type:
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{name} in {module.__file__} is not a subclass of mrctl.{base.__name__}")
    return cls
