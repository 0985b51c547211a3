"""Files a job ships to its tasks (an mrjob script's FILES and DIRS, a streaming job's `files:`).

On the host they are packed into the job's module (zlib'd msgpack of (name, bytes), base64), so
they travel through Redis with the code, to workers that share no filesystem with the caller.
Each worker process unpacks them once into a directory of its own, which its tasks run in.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import tempfile
import zlib
from pathlib import Path

from mrctl.errors import SpecError
from mrctl.io import codec

MAX_FILES_BYTES = 32 << 20  # what a job may ship inside its module (it travels through Redis)


def pack_files(files: dict[str, str | Path], dirs: dict[str, str | Path], where: str) -> str:
    """{name in the task's directory: path} and {name: directory} as one packed listing; a
    SpecError (saying `where`) for a file that cannot be read or a listing over MAX_FILES_BYTES."""
    listing: dict[str, bytes] = {}
    try:
        for name, path in files.items():
            listing[name] = Path(path).read_bytes()
        for name, path in dirs.items():
            for item in sorted(Path(path).rglob("*")):
                if item.is_file():
                    listing[f"{name}/{item.relative_to(path).as_posix()}"] = item.read_bytes()
    except OSError as exc:
        raise SpecError(f"{where}: cannot read a file the job ships: {exc}") from None
    size = sum(len(b) for b in listing.values())
    if size > MAX_FILES_BYTES:
        raise SpecError(f"{where}: the files the job ships hold {size >> 20} MiB; mrctl ships at most "
                        f"{MAX_FILES_BYTES >> 20} MiB with a job (give large data as input instead)")
    return base64.b64encode(zlib.compress(codec.pack(sorted(listing.items())), 6)).decode()


def unpack_files(packed: str) -> dict[str, bytes]:
    return dict(codec.unpack(zlib.decompress(base64.b64decode(packed))))


def shipped_dir(packed: str, prefix: str, executable: bool = False) -> Path:
    """This process's copy of the packed files (made on first use, then reused by every task),
    in its temp dir: a container's tmpfs, or a local cluster's directory. Made by mkdtemp (0700,
    a name nobody can take first: in a shared /tmp, a directory another user made under a name
    mrctl would pick could hold programs of theirs). `executable`: every file may be run (a
    streaming job's script or static binary)."""
    key = (prefix, packed)  # the same str object each task: its hash is computed once
    pid, path = _MADE.get(key, (0, None))
    if pid != os.getpid() or path is None or not path.is_dir():  # a forked child makes its own
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        for name, data in unpack_files(packed).items():
            target = path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            if executable:
                target.chmod(0o700)
        _MADE[key] = (os.getpid(), path)
    return path


_MADE: dict[tuple[str, str], tuple[int, Path]] = {}  # (prefix, packed) -> (the process, its copy)


def remove_made() -> None:
    """Remove this process's copies: at exit, and when a run's process ends (mrctl.worker.runs:
    it leaves by os._exit, which runs no atexit hook). A worker killed outright leaves them in
    its temp dir: a container's tmpfs, or a local cluster's directory, which go with it."""
    for key, (pid, path) in list(_MADE.items()):
        if pid == os.getpid():
            shutil.rmtree(path, ignore_errors=True)
            del _MADE[key]


atexit.register(remove_made)
