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

    A first import cut short (a signal's exception raised inside it) leaves the package's
    submodules that did load in sys.modules without their parent's attributes: the next
    import then finds "module 'requests' has no attribute 'exceptions'" (seen in CI after a
    Ctrl-C while a cluster started, with importlib.util.LazyLoader, which is worse still: on
    Python 3.11 it keeps the half-loaded module itself). So a failed import takes out every
    module it added, and the next use imports the package again whole."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = self._import()
        return getattr(self._module, attr)

    def _import(self) -> ModuleType:
        before = set(sys.modules)
        try:
            module = importlib.import_module(self._name)
        except BaseException:
            for added in set(sys.modules) - before:
                sys.modules.pop(added, None)
            raise
        return module
