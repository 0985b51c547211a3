"""Debian packages from the host's mirror, without apt or root: the apt configuration parsers
(pure), and the closure, downloads and root filesystem against the real mirror."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from mrctl.errors import InfraError
from mrctl.images import debian, rootfs


def _etc(tmp_path: Path, sources: str | None = None, one_line: str | None = None) -> Path:
    etc = tmp_path / "etc"
    (etc / "apt" / "sources.list.d").mkdir(parents=True)
    (etc / "os-release").write_text('PRETTY_NAME="Debian"\nVERSION_CODENAME=bookworm\n')
    if sources:
        (etc / "apt" / "sources.list.d" / "debian.sources").write_text(sources)
    if one_line:
        (etc / "apt" / "sources.list").write_text(one_line)
    return etc


def test_apt_source_reads_deb822_and_skips_security_and_updates(tmp_path):
    etc = _etc(tmp_path, sources=(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/example.gpg\n"))
    source = debian.apt_source(etc)
    assert (source.mirror, source.suite) == ("http://mirror.example/debian", "bookworm")
    assert source.keyring == Path("/usr/share/keyrings/example.gpg")


def test_apt_source_reads_a_one_line_sources_list(tmp_path):
    etc = _etc(tmp_path, one_line="# comment\ndeb [arch=amd64] http://old.example/debian bookworm main\n")
    assert debian.apt_source(etc).mirror == "http://old.example/debian"


def test_no_debian_archive_is_one_clear_error(tmp_path):
    with pytest.raises(InfraError) as info:
        debian.apt_source(_etc(tmp_path))
    assert "no Debian archive found in the host's apt configuration" in str(info.value)


@pytest.mark.parametrize("name,merged", [
    ("./bin/sh", "usr/bin/sh"), ("./lib64/ld-linux-x86-64.so.2", "usr/lib64/ld-linux-x86-64.so.2"),
    ("./etc/passwd", "etc/passwd"), ("./usr/bin/python3", "usr/bin/python3"), ("./bin/", "bin"), ("./", ""),
])
def test_merged_path(name, merged):
    assert rootfs.merged_path(name) == merged


@pytest.fixture(scope="module")
def archive():
    return debian.Archive(debian.apt_source(), on_progress=lambda message: None)


@pytest.mark.slow
def test_closure_follows_depends_and_respects_skip(archive):
    names = {p.name for p in archive.closure(["redis-server"])}
    assert {"redis-server", "redis-tools", "libc6"} <= names
    skipped = {p.name for p in archive.closure(["redis-server"], skip={"libc6", "redis-tools"})}
    assert "redis-server" in skipped and not {"libc6", "redis-tools"} & skipped


def test_a_root_filesystem_from_real_packages_is_merged_owned_by_root_and_has_a_passwd(archive):
    debs = archive.download(archive.closure(["dash", "base-passwd"], skip={"libc6", "libdebconfclient0"}))
    out = io.BytesIO()
    rootfs.write_rootfs(debs, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = {m.name: m for m in tar.getmembers()}
        passwd = tar.extractfile("etc/passwd").read()
        master = tar.extractfile("usr/share/base-passwd/passwd.master").read()
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert members["usr/bin/dash"].isfile() and members["usr/bin/sh"].linkname == "dash"
    assert not any(n.startswith(("bin/", "lib/")) for n in members)  # all under usr/
    assert len(members) == len({m.name for m in members.values()})  # no path twice
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}
    assert passwd == master and passwd.startswith(b"root:")
    assert members["tmp"].mode == 0o1777


@pytest.mark.slow
def test_the_parsed_index_is_kept_under_its_checksum_and_read_back_the_same(tmp_path, archive):
    """A second Archive reads the index parsed before (under the checksum the signed Release
    names) instead of parsing the Packages file again, and gets the same packages; a damaged
    one is parsed again and rewritten. The first parse is the machine's own (the `archive`
    fixture's cache), copied: one parse here, not two (each is seconds of CPU)."""
    parsed = archive.packages()
    kept = max((archive.cache.parent / "index").glob("*.json"), key=lambda p: p.stat().st_mtime)  # older: stale
    assert len(kept.stem) == 64
    (tmp_path / "index").mkdir()
    copy = tmp_path / "index" / kept.name
    copy.write_bytes(kept.read_bytes())
    again = debian.Archive(archive.source, on_progress=lambda message: None, cache=tmp_path)
    assert again.packages() == parsed
    copy.write_text("not json")  # a damaged cache is parsed again, not trusted
    assert debian.Archive(archive.source, on_progress=lambda message: None, cache=tmp_path).packages() == parsed
    assert copy.read_bytes() == kept.read_bytes()  # and kept again, as parsed the first time


def test_unpacked_absolute_symlinks_point_into_the_unpacked_root(archive, tmp_path):
    # fontconfig-config links /etc/fonts/conf.d/*.conf to /usr/share/fontconfig/conf.avail/
    rootfs.unpack(archive.download([archive.packages()["fontconfig-config"]]), tmp_path)
    link = tmp_path / "etc" / "fonts" / "conf.d" / "45-latin.conf"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert link.resolve() == tmp_path / "usr" / "share" / "fontconfig" / "conf.avail" / "45-latin.conf"
    assert link.read_text().startswith("<?xml")
