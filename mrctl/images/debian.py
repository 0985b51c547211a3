"""Debian packages straight from the host's configured mirror, without apt, dpkg, debootstrap
or root: read the apt configuration, fetch and verify the suite's index, resolve a dependency
closure, download the `.deb`s (checksummed, cached). mrctl.images.rootfs unpacks them.

Two things are built on it: the offline base image (a root filesystem tar for `docker import`,
see mrctl.images.build) and programs the host lacks, unpacked into mrctl's cache (mrctl.images.fetched: the
local backend's redis-server, the tests' browser). The Debian formats (deb822 paragraphs,
relation fields) are read with python-debian.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import lzma
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from debian import deb822

from mrctl.errors import InfraError
from mrctl.host.dirs import cache_dir

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
HTTP_TIMEOUT_S = 20
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
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
        parsed = self.cache.parent / "index" / f"{entry['sha256']}.json"
        with contextlib.suppress(OSError, ValueError, TypeError):
            return {row[0]: _from_row(row) for row in json.loads(parsed.read_text(encoding="utf-8"))}
        data = self._fetch(f"dists/{self.source.suite}/{wanted}")
        _check_sha256(data, entry["sha256"], wanted)
        text = lzma.decompress(data).decode("utf-8", errors="replace")
        found: dict[str, Package] = {}
        for para in deb822.Packages.iter_paragraphs(text.splitlines(), use_apt_pkg=False,
                                                     fields=INDEX_FIELDS):
            pkg = _package(para)
            found.setdefault(pkg.name, pkg)
        _write_parsed(parsed, found)
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


# The parsed index, kept beside the downloads under the index's own checksum (which the signed
# Release names): reading 63,000 paragraphs with python-debian takes ~10 s of CPU, its JSON
# ~0.5 s, and every later fetch (an image, redis-server, the tests' browser) needs it.

def _from_row(row: list) -> Package:
    name, version, essential, depends, provides, filename, size, sha256 = row
    return Package(name, version, essential, tuple(tuple(c) for c in depends), tuple(provides),
                   filename, size, sha256)


def _write_parsed(path: Path, packages: dict[str, Package]) -> None:
    rows = [[p.name, p.version, p.essential, p.depends, p.provides, p.filename, p.size, p.sha256]
            for p in packages.values()]
    with contextlib.suppress(OSError):  # a cache: the index is parsed again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".part{os.getpid()}")
        tmp.write_text(json.dumps(rows), encoding="utf-8")
        os.replace(tmp, path)


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
