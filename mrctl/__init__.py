"""mrctl: MapReduce on Redis and Docker containers.

`mrctl.run(spec, **overrides)` runs a job and returns a RunResult; `mrctl.read_output(path)`
reads an output file back; `mrctl.testing.run_inline` runs job classes on a few records.
"""

from mrctl.errors import InfraError, Interrupted, JobFailed, MrctlError, SpecError
from mrctl.io.output import read_output
from mrctl.job import Mapper, Reducer

__version__ = "0.1.0"
__all__ = ["Mapper", "Reducer", "MrctlError", "JobFailed", "SpecError", "InfraError", "Interrupted",
           "run", "RunResult", "read_output", "__version__"]


def __getattr__(name: str):
    # mrctl.run and RunResult load the runner (Redis, the backends) only when used, so that
    # importing mrctl for Mapper and Reducer in a job module stays light.
    if name in ("run", "RunResult"):
        from mrctl import api

        return getattr(api, name)
    raise AttributeError(f"module 'mrctl' has no attribute {name!r}")
