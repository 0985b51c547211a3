"""Word count done the ways a user could do it without mrctl: the speed of Python itself and
of the tools a user would pick instead. Every function returns a Counter of the same words
(lowercased maximal runs of letters) so the benchmark can check each against the reference.
"""

from __future__ import annotations

import collections
import multiprocessing
import re
from pathlib import Path

WORD = re.compile(r"[^\W\d_]+")
BLOCK = 8 << 20


def _count_range(args: tuple[str, int, int]) -> collections.Counter:
    path, start, end = args
    counts: collections.Counter = collections.Counter()
    with open(path, "rb") as f:
        f.seek(start)
        remaining = end - start
        while remaining > 0:
            data = f.read(min(BLOCK, remaining))
            remaining -= len(data)
            if remaining > 0:  # finish the last line of the block
                tail = f.readline()
                remaining -= len(tail)
                data += tail
            counts.update(WORD.findall(data.decode("utf-8", errors="replace").lower()))
    return counts


def _ranges(paths: list[Path], pieces: int) -> list[tuple[str, int, int]]:
    """Cut every file into about `pieces` byte ranges on line boundaries."""
    out = []
    for path in paths:
        size = path.stat().st_size
        step = max(1, size // pieces)
        with open(path, "rb") as f:
            start = 0
            while start < size:
                f.seek(min(size, start + step))
                f.readline()
                end = min(size, f.tell()) if start + step < size else size
                out.append((str(path), start, end))
                start = end
    return out


def optimised_single(paths: list[Path]) -> collections.Counter:
    """One process: big blocks, lowercase, one regex, Counter."""
    total: collections.Counter = collections.Counter()
    for path in paths:
        total.update(_count_range((str(path), 0, path.stat().st_size)))
    return total


def multiprocess(paths: list[Path], processes: int = 2) -> collections.Counter:
    """The same over `processes` worker processes, merged at the end."""
    total: collections.Counter = collections.Counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for counts in pool.imap_unordered(_count_range, _ranges(paths, 4 * processes)):
            total.update(counts)
    return total


def dask_bag(paths: list[Path]) -> collections.Counter | None:
    try:
        import dask
        import dask.bag as db
    except ImportError:
        return None
    with dask.config.set(scheduler="processes", num_workers=2):
        bag = db.read_text([str(p) for p in paths], blocksize="32MiB")
        pairs = bag.map(lambda line: WORD.findall(line.lower())).flatten().frequencies()
        return collections.Counter(dict(pairs.compute()))


def pyspark_local2(paths: list[Path]) -> collections.Counter | None:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    spark = SparkSession.builder.master("local[2]").appName("wc").getOrCreate()
    try:
        rdd = spark.sparkContext.textFile(",".join(str(p) for p in paths))
        pattern = WORD.pattern
        counts = (rdd.flatMap(lambda line: re.findall(pattern, line.lower()))
                  .map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b).collect())
        return collections.Counter(dict(counts))
    finally:
        spark.stop()
