"""Every Docker call mrctl makes, through docker-py: no other package imports `docker`.

docker-py (with requests, urllib3 and, when installed, paramiko: about 0.3 s) is imported on
its first use, not when a module here is: the local and inline backends, and commands that
only read labels or check flags, never pay for it.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    """The top-level module `name`, loaded when one of its attributes is first read (the
    standard library's importlib.util.LazyLoader recipe)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
