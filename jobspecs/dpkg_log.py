"""What dpkg did, day by day: two jobs over dpkg's log (/var/log/dpkg.log, rotated .gz too).

A dpkg.log line is `DATE TIME WORD ...`, the WORD being what happened: install, upgrade,
remove, status, configure, startup, trigproc, ...:

    2026-11-29 05:13:56 install runc:amd64 <none> 1.1.5+ds1-1+deb12u1

- dpkg_log.yaml counts the lines of each day and word: `"2026-11-29 install" -> 29`.
- dpkg_top.yaml (two steps) finds the ten packages installed most often: step 1 counts the
  `install` lines of each package (its 4th field without the `:arch` suffix), step 2 keeps the
  ten largest counts, ties broken by package name, A first.

Fields are separated by whitespace. A line with fewer than three fields (a truncated or blank
line) is no event: it is skipped and counted in the counter `dpkg_log, malformed`, shown in the
run's summary; so is an `install` line without a package.
"""

import heapq

from mrctl import Mapper, Reducer

TOP = 10


def fields_of(mapper, line):
    """The line's fields, or None (and a `malformed` count) if it has fewer than three."""
    fields = line.split()
    if len(fields) < 3:
        mapper.increment_counter("dpkg_log", "malformed")
        return None
    return fields


class DayEventMapper(Mapper):
    """("DATE WORD", 1) per line."""

    def map(self, line):
        fields = fields_of(self, line)
        if fields:
            yield f"{fields[0]} {fields[2]}", 1


class SumReducer(Reducer):
    """Adds up the counts of a key; also used as the combiner."""

    def reduce(self, key, values):
        return sum(values)


class InstallMapper(Mapper):
    """Step 1 of dpkg_top: (package, 1) per install line; "libc6:amd64" counts as "libc6"."""

    def map(self, line):
        fields = fields_of(self, line)
        if fields and fields[2] == "install":
            if len(fields) < 4:
                self.increment_counter("dpkg_log", "malformed")
                return
            yield fields[3].split(":")[0], 1


class AllToOneKey(Mapper):
    """Step 2 of dpkg_top: every (package, installs) under one key, so one reduce call sees
    them all (the classic top-N pattern)."""

    def map(self, package, installs):
        yield "top", (installs, package)


class TopTen(Reducer):
    """The ten largest counts, ties broken by package name ascending, as (package, installs)."""

    def reduce(self, key, values):
        for installs, package in heapq.nsmallest(TOP, values, key=lambda v: (-v[0], v[1])):
            yield package, installs
