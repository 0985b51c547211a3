"""Expected outputs of the example jobs in jobspecs/, computed in plain sequential Python from
each job's contract (its module docstring), independently of mrctl and of the jobs' classes:
a test runs a job and compares its output with these.

Each function takes the input paths and returns what the job's JSON output holds, as a dict.
"""

from __future__ import annotations

import collections
import csv
import gzip
import math
import os
import re
from pathlib import Path

WORD = re.compile(r"[^\W\d_]+")  # maximal runs of Unicode letters


def _lines(path: str | os.PathLike) -> list[str]:
    """A file's lines as mrctl reads them: UTF-8 (undecodable bytes replaced), .gz decompressed,
    split on "\\n" with a "\\r" before it dropped."""
    data = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        data = gzip.decompress(data)
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def inverted_index(paths) -> dict[str, list[str]]:
    """Each word (lowercased) -> the sorted base names of the files it occurs in."""
    files: dict[str, set[str]] = collections.defaultdict(set)
    for path in paths:
        for line in _lines(path):
            for word in WORD.findall(line):
                files[word.lower()].add(os.path.basename(path))
    return {word: sorted(names) for word, names in files.items()}


def _dpkg_events(paths):
    """The fields of each dpkg.log line that has at least three, and the number that has not."""
    events, malformed = [], 0
    for path in paths:
        for line in _lines(path):
            fields = line.split()
            if len(fields) >= 3:
                events.append(fields)
            else:
                malformed += 1
    return events, malformed


def dpkg_log(paths) -> dict[str, int]:
    """"DATE WORD" -> number of lines; lines with fewer than three fields are not counted."""
    return dict(collections.Counter(f"{f[0]} {f[2]}" for f in _dpkg_events(paths)[0]))


def dpkg_log_malformed(paths) -> int:
    """The counter `dpkg_log, malformed` of dpkg_log: lines with fewer than three fields."""
    return _dpkg_events(paths)[1]


def dpkg_top(paths, top: int = 10) -> dict[str, int]:
    """The `top` packages with the most install lines (package: 4th field, ":arch" dropped),
    ties broken by package name ascending."""
    installs = collections.Counter(f[3].split(":")[0] for f in _dpkg_events(paths)[0]
                                   if f[2] == "install" and len(f) >= 4)
    ranked = sorted(installs.items(), key=lambda item: (-item[1], item[0]))
    return dict(ranked[:top])


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def groupby(path, by: str, sum: str) -> dict[str, dict[str, int | float]]:
    """Each value of column `by` -> {"count": rows, "sum": total of column `sum`}."""
    groups: dict[str, dict[str, int | float]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            group = groups.setdefault(row[by], {"count": 0, "sum": 0})
            group["count"] += 1
            group["sum"] += _number(row[sum])
    return groups


def _graph(path) -> dict[str, set[str]]:
    """node -> its distinct targets; targets are nodes too; blank lines skipped."""
    links: dict[str, set[str]] = {}
    for line in _lines(path):
        node, _, targets = line.partition("\t")
        node = node.strip()
        if node:
            links.setdefault(node, set()).update(targets.split())
            for target in targets.split():
                links.setdefault(target, set())
    return links


def pagerank(path, damping: float = 0.85, iterations: int = 10,
             tolerance: float = 0.0) -> dict[str, float]:
    """Power iteration: ranks start at 1/N; each iteration gives every node
    (1-d)/N + d * (sum of rank(u)/outdegree(u) over its in-links u + dangling/N), dangling
    being the total rank of the nodes without out-links; stops after `iterations`, or after
    an iteration in which no rank changed by more than `tolerance`."""
    links = _graph(path)
    n = len(links)
    rank = {node: 1 / n for node in links}
    for _ in range(iterations):
        shares: dict[str, list[float]] = {node: [] for node in links}
        for node, targets in links.items():
            for target in targets:
                shares[target].append(rank[node] / len(targets))
        dangling = math.fsum(rank[node] for node, targets in links.items() if not targets)
        new = {node: (1 - damping) / n + damping * (math.fsum(shares[node]) + dangling / n)
               for node in links}
        changed = any(abs(new[node] - rank[node]) > tolerance for node in links)
        rank = new
        if not changed:
            break
    return rank
