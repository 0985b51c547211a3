"""A full disk under the master, translated where it enters (its spill files and the output
file) into an InfraError (exit 3) that names the directory and about how much more space the
write needed, instead of an OSError's traceback."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mrctl.errors import InfraError

FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left; a quota reached, which a user fixes the same way


@contextmanager
def full_disk_is_infra(directory: Path, doing: str, needed: Callable[[], str], fix: str) -> Iterator[None]:
    """Around writes into `directory`: a full disk (or quota) raises InfraError saying what was
    being done, about how much space it needed (`needed()`, worked out only then), how much is
    free there, and `fix`."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        raise InfraError(f"no space left on the disk of {directory} ({free_text(directory)}) while {doing}: "
                         f"{needed()}. {fix}") from None


def free_text(directory: Path) -> str:
    try:
        return f"{shutil.disk_usage(directory).free / 1e6:.1f} MB free"
    except OSError:
        return "gone"


def mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
