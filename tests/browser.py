"""The headless browser the web page's tests drive (tests/test_ui.py): `chromium` and
`chromedriver` from PATH when both are installed, else Debian's chromium, chromium-driver and a
font unpacked into mrctl's cache from the host's mirror on first use, the way the local backend
gets its redis-server (mrctl.images.fetched: no apt, no root; 120 to 190 MB the first time).

A fetched copy is run without Debian's /usr/bin/chromium, a shell wrapper that reads
/etc/chromium.d for flags a desktop wants: its real binary is /usr/lib/chromium/chromium, which
finds its resources beside itself. It draws text with the copy's own fonts only (FONTCONFIG_FILE
points at a config in the copy), whatever fonts the host has or lacks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from mrctl.images import fetched

log = logging.getLogger(__name__)

# fontconfig reads it from the copy's root: the fonts folder relative to it (prefix="relative"),
# so the copy stays valid wherever the cache is; its cache where the user's fontconfig keeps one
# (~/.cache/fontconfig; a relative cachedir would be relative to the working directory). DejaVu
# answers every family (the generic names first), as Debian's 49-sansserif.conf makes sans-serif
# the fallback.
FONTS_CONF = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<fontconfig>
  <dir prefix="relative">usr/share/fonts</dir>
  <cachedir prefix="xdg">fontconfig</cachedir>
  <alias><family>sans-serif</family><prefer><family>DejaVu Sans</family></prefer></alias>
  <alias><family>serif</family><prefer><family>DejaVu Serif</family></prefer></alias>
  <alias><family>monospace</family><prefer><family>DejaVu Sans Mono</family></prefer></alias>
  <match target="pattern"><edit name="family" mode="append_last"><string>DejaVu Sans</string></edit></match>
</fontconfig>
"""

CHROMIUM = fetched.Program(
    "chromium", ("chromium", "chromium-driver", "fonts-dejavu-core"), "usr/lib/chromium/chromium",
    no_mirror="the web page's tests need a headless Chromium: `chromium` and `chromedriver` are not "
              "on PATH, and this host has no Debian mirror in its apt configuration to fetch them "
              "from (into ~/.cache/mrctl, without root). Install Chromium and its driver (on Debian: "
              "apt-get install chromium chromium-driver, as root), or deselect them: -m 'not browser'",
    files={"fonts.conf": FONTS_CONF},
    # Mesa's GPU drivers and the LLVM they need: 450 of a bare machine's 1.1 GB unpacked, loaded
    # only for a GPU; headless Chromium draws with the SwiftShader in /usr/lib/chromium.
    leave_out=("libgl1-mesa-dri",))
DRIVER = "usr/bin/chromedriver"
# Headless, and as root (this machine's CI user) Chromium's sandbox cannot start.
ARGUMENTS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400")


@dataclass(frozen=True)
class Browser:
    """A Chromium binary, its chromedriver, and the environment both need."""

    chromium: str
    chromedriver: str
    origin: str  # "PATH" or the cache folder of a fetched copy
    env: dict[str, str] = field(default_factory=dict)  # for a fetched copy: its libraries and fonts

    @contextlib.contextmanager
    def session(self) -> Iterator:
        """A new headless session (a selenium Chrome driver), quit on leaving.

        Its temporary files go to a short folder of its own, removed afterwards: Chromium puts
        its singleton socket in TMPDIR, and a socket's path has at most 107 bytes (the tests'
        private TMPDIR, nested once more in each pytest-xdist worker, made it 111 and Chromium
        exit at start)."""
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = self.chromium
        for argument in ARGUMENTS:
            options.add_argument(argument)
        with tempfile.TemporaryDirectory(prefix="mrctl-chromium-", dir="/tmp", ignore_cleanup_errors=True) as tmp:
            # chromedriver starts chromium, which inherits this environment from it
            service = Service(self.chromedriver, env={**os.environ, **self.env, "TMPDIR": tmp})
            driver = webdriver.Chrome(service=service, options=options)
            try:
                yield driver
            finally:
                driver.quit()


def obtain_browser() -> Browser:
    """Chromium and chromedriver from PATH, else from the cache, fetched if need be (InfraError,
    saying what to do, when there is no mirror to fetch from)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is not None and driver is not None:
        return Browser(chromium, driver, "PATH")
    copy = fetched.obtain(CHROMIUM, lambda message: log.info("%s", message))
    return Browser(copy.path(CHROMIUM.marker), copy.path(DRIVER), str(copy.root),
                   {**copy.env, "FONTCONFIG_FILE": copy.path("fonts.conf")})
