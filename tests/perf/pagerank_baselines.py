"""PageRank done the ways a user could do it without mrctl: a plain Python loop and PySpark.

    python tests/perf/pagerank_baselines.py plain GRAPH.tsv OUT.json
    $SPARK_PYTHON tests/perf/pagerank_baselines.py spark GRAPH.tsv OUT.json

The contract, which mrctl's pagerank job computes too: N is the number of distinct nodes
(sources and targets), every rank starts at 1/N, a node's outdegree is its number of distinct
targets, and each iteration sets

    rank'(v) = (1 - d)/N + d * (sum over in-links u of rank(u)/outdeg(u) + dangling/N)

where dangling is the total rank of the nodes without out-links, so the ranks always sum to 1.
d = 0.85, 10 iterations. Each function returns {node: rank}.

This module uses the standard library only (PySpark is imported inside `spark_pagerank`), so
that it runs as a script in a venv that has PySpark and not mrctl. As a script it writes the
ranks as JSON to OUT and prints its timings as one JSON line on stdout.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

DAMPING = 0.85
ITERATIONS = 10


def read_adjacency(path: Path) -> dict[str, list[str]]:
    """node -> its targets; targets that have no line of their own are nodes without out-links."""
    graph: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            node, _, rest = line.rstrip("\n").partition("\t")
            graph[node] = rest.split()
    for targets in list(graph.values()):
        for t in targets:
            graph.setdefault(t, [])
    return graph


def plain_pagerank(path: Path, damping: float = DAMPING, iterations: int = ITERATIONS) -> dict[str, float]:
    """One process, dicts and a loop: the floor a user gets without any framework."""
    graph = read_adjacency(path)
    n = len(graph)
    rank = dict.fromkeys(graph, 1.0 / n)
    linked = [(u, targets, 1.0 / len(targets)) for u, targets in graph.items() if targets]
    dangling_nodes = [u for u, targets in graph.items() if not targets]
    for _ in range(iterations):
        incoming = dict.fromkeys(graph, 0.0)
        for u, targets, share in linked:
            r = rank[u] * share
            for v in targets:
                incoming[v] += r
        dangling = sum(rank[u] for u in dangling_nodes)
        base = (1.0 - damping) / n + damping * dangling / n
        rank = {v: base + damping * s for v, s in incoming.items()}
    return rank


def spark_session(master: str = "local[2]"):
    """A quiet local SparkSession whose Python workers run this interpreter."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(master).appName("pagerank-bench")
             .config("spark.ui.enabled", "false")
             .config("spark.driver.memory", "2g")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_pagerank(sc, path: Path, damping: float = DAMPING, iterations: int = ITERATIONS) -> dict[str, float]:
    """The textbook RDD PageRank (links join ranks, contributions reduced by key), with the
    dangling mass gathered in an accumulator during the same pass and spread over all N nodes.
    One action per iteration; each iteration's sums are cached, so the accumulator is read
    right after the only run of the tasks that fill it."""
    parts = sc.defaultParallelism

    def parse(line):
        node, _, rest = line.partition("\t")
        targets = tuple(rest.split())
        return [(node, targets)] + [(t, ()) for t in targets]

    # Every node once with its targets; a target-only node gets the empty tuple.
    links = (sc.textFile(str(path), minPartitions=parts).flatMap(parse)
             .reduceByKey(lambda a, b: a + b, parts).cache())
    n = links.count()
    ranks = links.mapValues(lambda _: 1.0 / n)
    zeros = links.mapValues(lambda _: 0.0)  # so that a node without in-links keeps a rank
    previous = None
    for _ in range(iterations):
        dangling = sc.accumulator(0.0)

        def contributions(kv, dangling=dangling):
            targets, rank = kv[1]
            if not targets:
                dangling.add(rank)
            return [(t, rank / len(targets)) for t in targets]

        sums = (zeros.union(links.join(ranks).flatMap(contributions))
                .reduceByKey(lambda a, b: a + b, parts).cache())
        sums.count()  # runs the iteration, which fills the accumulator
        if previous is not None:
            previous.unpersist()
        previous = sums
        base = (1.0 - damping) / n + damping * dangling.value / n
        ranks = sums.mapValues(lambda s, base=base: base + damping * s)
    return dict(ranks.collect())


def run_spark(path: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Spark PageRank with its timings: start-up (JVM and session), compute (reading the
    graph, the iterations, collecting the ranks) and stop."""
    t0 = time.perf_counter()
    spark = spark_session()
    t1 = time.perf_counter()
    try:
        ranks = spark_pagerank(spark.sparkContext, path)
        t2 = time.perf_counter()
    finally:
        spark.stop()
    t3 = time.perf_counter()
    return ranks, {"startup_s": t1 - t0, "compute_s": t2 - t1, "stop_s": t3 - t2}


def max_relative_error(ranks: dict[str, float], reference: dict[str, float]) -> float:
    """The largest |r - ref| / ref over the reference's nodes; inf if a node is missing or extra."""
    if ranks.keys() != reference.keys():
        return math.inf
    return max(abs(ranks[k] - v) / v for k, v in reference.items())


def check(ranks: dict[str, float], reference: dict[str, float], tolerance: float = 1e-9) -> float:
    """Assert the contract: same nodes as the reference, each rank within `tolerance` relative,
    ranks summing to 1. Returns the max relative error."""
    err = max_relative_error(ranks, reference)
    assert err <= tolerance, f"max relative error {err:.3g} > {tolerance}"
    total = math.fsum(ranks.values())
    assert abs(total - 1.0) <= 1e-9, f"ranks sum to {total!r}, not 1"
    return err


def main() -> None:
    way, graph, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if way == "spark":
        ranks, timings = run_spark(graph)
    elif way == "plain":
        t0 = time.perf_counter()
        ranks = plain_pagerank(graph)
        timings = {"compute_s": time.perf_counter() - t0}
    else:
        raise SystemExit(f"unknown way {way!r}: expected plain or spark")
    out.write_text(json.dumps(ranks), encoding="utf-8")
    print(json.dumps(timings), flush=True)


if __name__ == "__main__":
    main()
