"""Every Docker call mrctl makes, through docker-py: no other package imports `docker`.

docker-py (with requests, urllib3 and, when installed, paramiko: about 0.3 s) is imported on
its first use, not when a module here is: the local and inline backends, and commands that
only read labels or check flags, never pay for it.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any


class OnFirstUse:
    """Stands for the top-level module `name`, imported the first time one of its attributes
    is read.

    A first import cut short (a signal's exception raised inside it) removes the modules whose
    code failed, but leaves their submodules that did load, orphaned: the next import runs the
    package again, its `from .exceptions import ...` finds the orphan, and the package lacks the
    attribute ("module 'requests' has no attribute 'exceptions'", seen in CI after a Ctrl-C
    while a cluster started; importlib.util.LazyLoader is worse still: on Python 3.11 it keeps
    the half-loaded module itself). So a failed import takes out the orphans it left, and the
    next use imports the package again whole. Only orphans: whatever another thread imported
    meanwhile is whole, and stays."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # copy, pickle and friends probe dunders: not the module's
            raise AttributeError(attr)
        module = self.__dict__.get("_module")
        if module is None:
            module = self._module = self._import()
        return getattr(module, attr)

    def _import(self) -> ModuleType:
        before = set(sys.modules)
        try:
            return importlib.import_module(self._name)
        except BaseException:
            for added in sorted(set(sys.modules) - before):
                if _orphaned(added):
                    sys.modules.pop(added, None)
            raise


def _orphaned(name: str) -> bool:
    """Whether a package above module `name` is missing from sys.modules (its import failed)."""
    parts = name.split(".")
    return any(".".join(parts[:i]) not in sys.modules for i in range(1, len(parts)))
