"""mrctl: MapReduce on Redis and Docker containers.

`mrctl.run(spec, **overrides)` runs a job and returns a RunResult; `mrctl.read_output(path)`
reads an output file back; `mrctl.testing.run_inline` runs job classes on a few records.
"""

from typing import TYPE_CHECKING

from mrctl.errors import InfraError, Interrupted, JobFailed, MrctlError, SpecError

if TYPE_CHECKING:  # what type checkers and editors see; loaded on first use below
    from mrctl.api import RunResult, run
    from mrctl.io.output import read_output
    from mrctl.job import Mapper, Reducer

__version__ = "0.1.0"
__all__ = ["Mapper", "Reducer", "MrctlError", "JobFailed", "SpecError", "InfraError", "Interrupted",
           "run", "RunResult", "read_output", "__version__"]

# The rest of the public face, each from its module on first use: `import mrctl` (or any
# mrctl.x, which imports this package first) stays light for the processes that need none of
# them, such as a worker's heartbeat keeper, and mrctl.run loads Redis and the backends only
# when a job is run.
_FROM = {"Mapper": "mrctl.job", "Reducer": "mrctl.job", "read_output": "mrctl.io.output",
         "run": "mrctl.api", "RunResult": "mrctl.api"}


def __getattr__(name: str):
    if name in _FROM:
        import importlib

        value = globals()[name] = getattr(importlib.import_module(_FROM[name]), name)
        return value
    raise AttributeError(f"module 'mrctl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_FROM})
