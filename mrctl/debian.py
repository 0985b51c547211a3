"""Debian packages straight from the host's configured mirror, without apt, dpkg, debootstrap
or root: read the apt configuration, fetch and verify the suite's index, resolve a dependency
closure, download the `.deb`s (checksummed, cached) and unpack their data into a tar stream.

Two things are built on it: the offline base image (a root filesystem tar for `docker import`,
see mrctl.images) and the local backend's redis-server when the host has none
(mrctl.backends.redis_server). The Debian formats (deb822 paragraphs, relation fields, the
`ar`/`tar` layers of a `.deb`) are read with python-debian.

What dpkg would also do and this does not: run maintainer scripts. The few of their effects
that matter in a container are reproduced (`/etc/passwd` and `/etc/group` from base-passwd,
a merged `/usr`, `/tmp`); nothing else is needed to run python3 and redis-server.
"""

from __future__ import annotations

import hashlib
import io
import logging
import lzma
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from debian import deb822, debfile

from mrctl.dirs import cache_dir
from mrctl.errors import InfraError

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
HTTP_TIMEOUT_S = 20
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Top-level directories that a merged-/usr system keeps under /usr (bin -> usr/bin, ...).
MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Documentation left out of what is unpacked (licences stay), as slim Debian images do.
SLIM_OUT = ("usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/locale/",
            "usr/share/lintian/")
INDEX_FIELDS = ["Package", "Version", "Essential", "Depends", "Pre-Depends", "Provides",
                "Filename", "Size", "SHA256"]


# -- the host's apt configuration -------------------------------------------------------------

@dataclass(frozen=True)
class AptSource:
    """One suite of a Debian archive, as the host's apt configuration names it."""

    mirror: str  # e.g. http://<mirror>/debian (never written into the repo)
    suite: str  # codename, e.g. bookworm
    keyring: Path | None = None  # Signed-By, if the source names one
    arch: str = ""

    @property
    def architecture(self) -> str:
        return self.arch or host_architecture()


def host_architecture() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "i686": "i386",
            "ppc64le": "ppc64el", "s390x": "s390x"}.get(machine, machine)


def apt_source(etc: Path = Path("/etc")) -> AptSource:
    """The host's main Debian archive (not security, not -updates), from its apt configuration."""
    codename = _os_codename(etc)
    entries: list[tuple[str, list[str], str | None]] = []
    sources_d = etc / "apt" / "sources.list.d"
    for path in sorted(sources_d.glob("*.sources")):
        entries += parse_deb822(path.read_text(errors="replace"))
    for path in [etc / "apt" / "sources.list", *sorted(sources_d.glob("*.list"))]:
        if path.exists():
            entries += [(uri, suites, None) for uri, suites in parse_one_line_style(
                path.read_text(errors="replace"))]
    for uri, suites, keyring in entries:
        main = [s for s in suites if "-" not in s and "/" not in s]
        if main and "security" not in uri:
            return AptSource(uri.rstrip("/"), codename if codename in main else main[0],
                             Path(keyring) if keyring and keyring.startswith("/") else None)
    raise InfraError("no Debian archive found in the host's apt configuration "
                     f"({etc}/apt/sources.list, {sources_d}): mrctl cannot fetch Debian packages "
                     "here; give Docker registry access so the official images can be pulled")


def parse_deb822(text: str) -> list[tuple[str, list[str], str | None]]:
    """(uri, suites, signed-by) of each enabled `Types: deb` paragraph of a .sources file."""
    found = []
    for para in deb822.Deb822.iter_paragraphs(text.splitlines()):
        if "deb" in para.get("Types", "").split() and para.get("Enabled", "yes") != "no":
            for uri in para.get("URIs", "").split():
                found.append((uri, para.get("Suites", "").split(), para.get("Signed-By")))
    return found


def parse_one_line_style(text: str) -> list[tuple[str, list[str]]]:
    """(uri, [suite]) of each `deb` line of a sources.list."""
    found = []
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            found.append((words[1], [words[2]]))
    return found


def _os_codename(etc: Path) -> str:
    release = etc / "os-release"
    if release.exists():
        match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", release.read_text(), re.M)
        if match:
            return match.group(1)
    return ""


def probe_mirror(source: AptSource, timeout_s: float = 5.0) -> None:
    """Raise InfraError unless the suite's Release file answers within `timeout_s`."""
    url = f"{source.mirror}/dists/{source.suite}/InRelease"
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return
    except (urllib.error.URLError, OSError) as exc:
        raise InfraError(f"the Debian mirror does not answer ({url}: "
                         f"{getattr(exc, 'reason', exc)})") from None


# -- the archive ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Package:
    name: str
    version: str
    essential: bool
    depends: tuple[tuple[str, ...], ...]  # Pre-Depends + Depends: alternatives per clause
    provides: tuple[str, ...]
    filename: str  # pool path on the mirror
    size: int
    sha256: str


class Archive:
    """One suite's `main` component of a Debian mirror: a verified index, cached downloads."""

    def __init__(self, source: AptSource, on_progress: Progress = log.info,
                 cache: Path | None = None) -> None:
        self.source = source
        self.on_progress = on_progress
        self.cache = (cache or cache_dir()) / "debs"
        self._packages: dict[str, Package] | None = None

    # -- index --------------------------------------------------------------------------

    def packages(self) -> dict[str, Package]:
        """Package name -> its newest entry in the suite's index (fetched once per Archive)."""
        if self._packages is None:
            self._packages = self._load_index()
        return self._packages

    def _load_index(self) -> dict[str, Package]:
        arch = self.source.architecture
        self.on_progress(f"reading the package index of {self.source.suite} ({arch}) "
                         f"from {self.source.mirror} ...")
        release = deb822.Release(self._verified_release())
        wanted = f"main/binary-{arch}/Packages.xz"
        entry = next((e for e in release.get("SHA256", []) if e["name"] == wanted), None)
        if entry is None:
            raise InfraError(f"{self.source.mirror} {self.source.suite} has no {wanted}")
        data = self._fetch(f"dists/{self.source.suite}/{wanted}")
        _check_sha256(data, entry["sha256"], wanted)
        text = lzma.decompress(data).decode("utf-8", errors="replace")
        found: dict[str, Package] = {}
        for para in deb822.Packages.iter_paragraphs(text.splitlines(), use_apt_pkg=False,
                                                     fields=INDEX_FIELDS):
            pkg = _package(para)
            found.setdefault(pkg.name, pkg)
        return found

    def _verified_release(self) -> str:
        """The suite's InRelease, its signature checked with gpgv when the host can."""
        signed = self._fetch(f"dists/{self.source.suite}/InRelease")
        keyring = self.source.keyring or KEYRING
        gpgv = shutil.which("gpgv")
        if gpgv is None or not keyring.exists():
            log.warning("gpgv or %s missing: the Release file's signature is not checked "
                        "(package checksums still are)", keyring)
            return signed.decode("utf-8", errors="replace")
        with tempfile.NamedTemporaryFile(suffix=".InRelease") as tmp:
            tmp.write(signed)
            tmp.flush()
            proc = subprocess.run([gpgv, "--keyring", str(keyring), "--output", "-", tmp.name],
                                  capture_output=True)
        if proc.returncode != 0:
            raise InfraError(f"the signature of {self.source.mirror} {self.source.suite} InRelease "
                             f"does not verify with {keyring}: "
                             f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
        return proc.stdout.decode("utf-8", errors="replace")

    def _fetch(self, path: str) -> bytes:
        url = f"{self.source.mirror}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
                return response.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InfraError(f"cannot download {url}: {reason}. Is the host's Debian mirror "
                             "reachable (it is read from /etc/apt)?") from None

    # -- dependency closure -------------------------------------------------------------

    def closure(self, wanted: Iterable[str], essential: bool = False,
                skip: Iterable[str] = ()) -> list[Package]:
        """`wanted` (plus the Essential set) and everything they depend on, in name order.

        Each clause takes its first alternative that the suite has (a real package, else one
        that provides it); versions are not compared: one suite has one version of each.
        Packages in `skip` (e.g. those installed on the host) are neither taken nor followed.
        """
        index = self.packages()
        providers: dict[str, str] = {}
        for pkg in index.values():
            for virtual in pkg.provides:
                providers.setdefault(virtual, pkg.name)
        todo = list(wanted) + ([p.name for p in index.values() if p.essential] if essential else [])
        skipped, taken = set(skip), {}
        for name in todo:
            if name not in index and name not in providers:
                raise InfraError(f"package {name} is not in {self.source.suite}")
        while todo:
            name = todo.pop()
            name = name if name in index else providers.get(name, name)
            if name in taken or name in skipped or name not in index:
                continue
            taken[name] = pkg = index[name]
            for clause in pkg.depends:
                choice = next((alt for alt in clause if alt in index or alt in providers), None)
                if choice is not None and not any(alt in taken or alt in skipped for alt in clause):
                    todo.append(choice)
        return sorted(taken.values(), key=lambda p: p.name)

    # -- downloads ----------------------------------------------------------------------

    def download(self, packages: list[Package], threads: int = 4) -> list[Path]:
        """The `.deb` files of `packages`, from the cache or the mirror, checksums verified."""
        self.cache.mkdir(parents=True, exist_ok=True)
        missing = [p for p in packages if not self._cached(p).exists()]
        total = sum(p.size for p in missing)
        if missing:
            self.on_progress(f"downloading {len(missing)} packages ({total / 1e6:.1f} MB) ...")
        done = [0, time.monotonic()]

        def fetch(pkg: Package) -> None:
            data = self._fetch(pkg.filename)
            _check_sha256(data, pkg.sha256, pkg.filename)
            tmp = self._cached(pkg).with_suffix(f".part{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, self._cached(pkg))
            done[0] += len(data)
            if time.monotonic() - done[1] > 2:
                done[1] = time.monotonic()
                self.on_progress(f"  downloaded {done[0] / 1e6:.1f} of {total / 1e6:.1f} MB")

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fetch, missing))
        return [self._cached(p) for p in packages]

    def _cached(self, pkg: Package) -> Path:
        return self.cache / f"{pkg.sha256[:16]}-{Path(pkg.filename).name}"


def _package(para: deb822.Packages) -> Package:
    clauses = para.relations["pre-depends"] + para.relations["depends"]
    return Package(
        name=para["Package"], version=para.get("Version", ""),
        essential=para.get("Essential", "no") == "yes",
        depends=tuple(tuple(alt["name"] for alt in clause) for clause in clauses),
        provides=tuple(alt["name"] for clause in para.relations["provides"] for alt in clause),
        filename=para.get("Filename", ""), size=int(para.get("Size", 0) or 0),
        sha256=para.get("SHA256", ""),
    )


def _check_sha256(data: bytes, expected: str, what: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise InfraError(f"{what}: checksum mismatch (got {actual[:12]}…, the index says "
                         f"{expected[:12]}…): a broken mirror or proxy; try again")


def installed_packages(status: Path = Path("/var/lib/dpkg/status")) -> set[str]:
    """Names of the packages dpkg lists as installed on this host (empty without dpkg)."""
    if not status.exists():
        return set()
    with status.open(encoding="utf-8", errors="replace") as f:
        return {p["Package"] for p in deb822.Deb822.iter_paragraphs(f, fields=["Package", "Status"])
                if p.get("Status", "").endswith(" installed")}


# -- unpacking --------------------------------------------------------------------------------

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
    """Unpack the data of `debs` into `dest` (as the current user: no owners, no devices)."""
    for deb in debs:
        for info, fileobj in members(deb):
            target = dest / info.name
            if info.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif info.issym():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                target.symlink_to(info.linkname)
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
