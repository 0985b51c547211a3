"""Unpacking the data of Debian packages (.deb files, read with python-debian) without dpkg
or root: into one tar stream that is a root filesystem (merged /usr, files owned by root inside
the tar, for `docker import`), or into a directory as the current user.

What dpkg would also do and this does not: run maintainer scripts. The few of their effects
that matter in a container are reproduced (`/etc/passwd` and `/etc/group` from base-passwd,
a merged `/usr`, `/tmp`); nothing else is needed to run python3 and redis-server.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from debian import debfile

# Top-level directories that a merged-/usr system keeps under /usr (bin -> usr/bin, ...).
MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Documentation left out of what is unpacked (licences stay), as slim Debian images do.
SLIM_OUT = ("usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/locale/",
            "usr/share/lintian/")


def members(deb: Path) -> Iterator[tuple[tarfile.TarInfo, BinaryIO | None]]:
    """The data members of a .deb, names made relative (no `./`) and /usr-merged."""
    data = debfile.DebFile(str(deb)).data.tgz()
    try:
        for member in data:
            info = _plain(member)
            if not info.name or info.name in MERGED_DIRS:
                continue  # the root, or a top-level dir that is a symlink into usr/ here
            if info.name.startswith(SLIM_OUT) and not info.name.endswith("/copyright"):
                continue
            yield info, data.extractfile(member) if member.isreg() else None
    finally:
        data.close()


def _plain(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """A plain TarInfo (python-debian's compares names loosely) with /usr-merged names."""
    info = tarfile.TarInfo(merged_path(str(member.name)))
    for field in ("mode", "uid", "gid", "uname", "gname", "size", "mtime", "type",
                  "devmajor", "devminor"):
        setattr(info, field, getattr(member, field))
    link = str(member.linkname)
    info.linkname = merged_path(link) if member.islnk() else link
    return info


def merged_path(name: str) -> str:
    """`./bin/sh` -> `usr/bin/sh`; `./etc/x` -> `etc/x`; the root -> ``."""
    name = name.removeprefix("./").lstrip("/").rstrip("/")
    top = name.split("/", 1)[0]
    if top in MERGED_DIRS and "/" in name:
        return f"usr/{name}"
    return name


def write_rootfs(debs: list[Path], out: BinaryIO, extra: dict[str, bytes] | None = None) -> None:
    """A root filesystem as one tar stream: every package's data, merged /usr, owner root.

    `extra` adds files (path -> content) after the packages. `/etc/passwd` and `/etc/group`
    come from base-passwd's master files, as its maintainer script would make them.
    """
    seen: set[str] = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for top in MERGED_DIRS:
            _add_dir(tar, f"usr/{top}", seen)
            link = tarfile.TarInfo(top)
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, f"usr/{top}", 0o777
            tar.addfile(link)
            seen.add(top)
        masters: dict[str, bytes] = {}
        for deb in debs:
            for info, fileobj in members(deb):
                if info.name in seen:
                    # dirs repeat across packages; a file shipped twice keeps its first copy
                    # (dpkg would refuse the second without Replaces)
                    continue
                seen.add(info.name)
                if info.name.startswith("usr/share/base-passwd/") and fileobj is not None:
                    content = fileobj.read()
                    masters[info.name.rsplit("/", 1)[1]] = content
                    fileobj = io.BytesIO(content)
                tar.addfile(info, fileobj)
        files = {"etc/passwd": masters.get("passwd.master"), "etc/group": masters.get("group.master"),
                 **(extra or {})}
        for path, content in files.items():
            if content is not None and path not in seen:
                info = tarfile.TarInfo(path)
                info.size, info.mode, info.mtime = len(content), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(content))
        if "tmp" not in seen:
            tmp = tarfile.TarInfo("tmp")
            tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(tmp)


def _add_dir(tar: tarfile.TarFile, name: str, seen: set[str]) -> None:
    parts = name.split("/")
    for i in range(1, len(parts) + 1):
        path = "/".join(parts[:i])
        if path not in seen:
            info = tarfile.TarInfo(path)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
            seen.add(path)


def unpack(debs: list[Path], dest: Path) -> None:
    """Unpack the data of `debs` into `dest` (as the current user: no owners, no devices), as
    a root of its own: an absolute symlink points into `dest`, not at the host's file."""
    for deb in debs:
        for info, fileobj in members(deb):
            target = dest / info.name
            if info.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif info.issym():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                target.symlink_to(_within(dest, target, info.linkname))
            elif info.islnk():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                shutil.copy2(dest / info.linkname, target)
            elif fileobj is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                with target.open("wb") as f:
                    shutil.copyfileobj(fileobj, f)
                target.chmod(info.mode & 0o755)


def _within(dest: Path, link: Path, target: str) -> str:
    """A symlink's target for `link` under `dest`: an absolute one (e.g. fontconfig's
    /etc/fonts/conf.d/*.conf -> /usr/share/fontconfig/...) made relative to `dest` as the root."""
    if not target.startswith("/"):
        return target
    return os.path.relpath(dest / merged_path(target), link.parent)
