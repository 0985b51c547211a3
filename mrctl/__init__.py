"""mrctl: MapReduce on Redis and Docker containers."""

from mrctl.errors import MrctlError
from mrctl.job import Mapper, Reducer

__version__ = "0.1.0"
__all__ = ["Mapper", "Reducer", "MrctlError", "__version__"]
