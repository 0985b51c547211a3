"""The Debian package graph, the input of the PageRank benchmark, from this machine's apt lists.

    python -m tests.perf.debian_graph OUT.tsv [--nodes-limit N]

A node is a package name; an edge runs from a package to the first alternative of each of its
Depends and Pre-Depends (versions and architecture qualifiers such as `:any` dropped). A package
listed more than once (several suites, components or architectures) gets the union of its
edges. Names that only appear as targets (virtual or missing packages) are nodes too.

The file has one line per source package, sorted by name, `node<TAB>target target ...` with
distinct targets, and `node<TAB>` for a package without dependencies. Targets that are not
packages themselves have no line of their own.
"""

from __future__ import annotations

import argparse
import gzip
import lzma
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from debian.deb822 import Packages

LISTS = Path("/var/lib/apt/lists")
APT_HELPER = "/usr/lib/apt/apt-helper"
# The bookworm main amd64 list alone is 19 MB as lz4; below this the lists were never fetched.
SMALL_LISTS_BYTES = 1 << 20


def package_lists(folder: Path = LISTS) -> list[Path]:
    """The Packages files apt keeps (any compression), fetching them first when missing."""
    def listed() -> list[Path]:
        return sorted(p for p in folder.glob("*_Packages*") if not p.name.endswith(".diff_Index"))

    found = listed()
    if sum(p.stat().st_size for p in found) < SMALL_LISTS_BYTES:
        print("apt lists missing or small: running apt-get update", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        found = listed()
    if not found:
        raise SystemExit(f"no Packages lists in {folder}, even after apt-get update")
    return found


@contextmanager
def open_list(path: Path) -> Iterator[IO[bytes]]:
    """The uncompressed bytes of one list: apt's own helper knows every compression apt uses."""
    if Path(APT_HELPER).exists():
        proc = subprocess.Popen([APT_HELPER, "cat-file", str(path)], stdout=subprocess.PIPE)
        try:
            yield proc.stdout
        finally:
            proc.stdout.close()
            if proc.wait() != 0:
                raise SystemExit(f"apt-helper cat-file {path} failed")
        return
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    with opener(path, "rb") as f:
        yield f


def first_alternatives(relations: list[list[dict]]) -> Iterator[str]:
    """The name of the first alternative of each relation (python-debian already drops the
    version and puts `:any` into archqual)."""
    for alternatives in relations:
        if alternatives:
            yield alternatives[0]["name"]


def read_graph(lists: list[Path]) -> dict[str, set[str]]:
    """package -> the set of its first-alternative Depends and Pre-Depends, over all lists."""
    graph: dict[str, set[str]] = {}
    for path in lists:
        with open_list(path) as f:
            for para in Packages.iter_paragraphs(f, fields=["Package", "Depends", "Pre-Depends"],
                                                 use_apt_pkg=False):
                targets = graph.setdefault(para["Package"], set())
                for field in ("pre-depends", "depends"):
                    targets.update(first_alternatives(para.relations[field]))
    return graph


def limit_nodes(graph: dict[str, set[str]], limit: int) -> dict[str, set[str]]:
    """The subgraph on the first `limit` packages by name (edges leaving it dropped), for quick tries."""
    keep = sorted(graph)[:limit]
    kept = set(keep)
    return {node: graph[node] & kept for node in keep}


def write_graph(graph: dict[str, set[str]], path: Path) -> tuple[int, int]:
    """Write the adjacency file; returns (nodes, edges), nodes counting targets-only names."""
    nodes: set[str] = set(graph)
    edges = 0
    with open(path, "w", encoding="utf-8") as f:
        for node in sorted(graph):
            targets = sorted(graph[node])
            nodes.update(targets)
            edges += len(targets)
            f.write(f"{node}\t{' '.join(targets)}\n")
    return len(nodes), edges


def build(path: Path, nodes_limit: int | None = None, quiet: bool = False) -> tuple[int, int]:
    """Build the graph file at `path` from the apt lists; print and return (nodes, edges)."""
    lists = package_lists()
    graph = read_graph(lists)
    if nodes_limit:
        graph = limit_nodes(graph, nodes_limit)
    nodes, edges = write_graph(graph, path)
    if not quiet:
        # the lists' file names carry the mirror's host name: counted, not printed
        print(f"debian graph: {nodes} nodes ({len(graph)} packages, {nodes - len(graph)} targets only), "
              f"{edges} edges, from {len(lists)} apt lists")
    return nodes, edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--nodes-limit", type=int, default=None)
    args = parser.parse_args()
    nodes, _ = build(args.out, args.nodes_limit)
    if nodes < 50_000 and not args.nodes_limit:
        print(f"warning: only {nodes} nodes; the benchmark wants >= 50,000", file=sys.stderr)


if __name__ == "__main__":
    main()
