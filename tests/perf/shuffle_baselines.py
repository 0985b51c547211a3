"""The shuffle-heavy job done the ways a user could do it without mrctl: plain Python, Dask bag
and PySpark.

    python tests/perf/shuffle_baselines.py plain INPUT_DIR OUT.json
    $BENCH_PYTHON tests/perf/shuffle_baselines.py dask INPUT_DIR OUT.json TMP_DIR
    $BENCH_PYTHON tests/perf/shuffle_baselines.py spark INPUT_DIR OUT.json TMP_DIR

The contract, which mrctl's job in shuffle_bench.py computes too: every line that has a word
(a run of non-whitespace) is keyed by its first word, lowercased, and its value is the whole
line (without its line ending), so every line of the input crosses the shuffle. Each key's
result is [number of lines, sha1 hex of "\\n".join(sorted(lines))]: a small output, but each
key's lines are all gathered and sorted in one place. Each way returns {key: [count, sha1]}.

This module uses the standard library only (Dask and PySpark are imported inside their
functions), so that it runs as a script in a venv that has them and not mrctl. As a script it
writes the result as JSON to OUT, and prints its timings as one JSON line on stdout; TMP_DIR
takes Dask's and Spark's shuffle files (the caller removes it).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path


def first_word(line: str) -> str:
    """The key of a line that has a word: its first word, lowercased."""
    return line.split(None, 1)[0].lower()


def has_word(line: str) -> bool:
    return bool(line.split(None, 1))


def strip_newline(line: str) -> str:
    return line[:-1] if line.endswith("\n") else line


def digest(lines: Iterable[str]) -> list:
    """[count, sha1 hex of the lines sorted and joined by newlines]."""
    ordered = sorted(lines)
    return [len(ordered), hashlib.sha1("\n".join(ordered).encode("utf-8")).hexdigest()]


def input_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def plain_reference(folder: Path) -> dict[str, list]:
    """One process, a dict of lists: every line held in memory at once."""
    groups: dict[str, list[str]] = {}
    for path in input_files(folder):
        with open(path, encoding="utf-8", newline="\n") as f:
            for line in f:
                line = strip_newline(line)
                if has_word(line):
                    groups.setdefault(first_word(line), []).append(line)
    return {key: digest(lines) for key, lines in groups.items()}


def dask_groupby(folder: Path, tmp: Path, workers: int = 2) -> tuple[dict[str, list], dict[str, float]]:
    """Dask bag, processes scheduler with `workers` processes: read_text in 64 MiB blocks,
    groupby on the key (Dask's disk shuffle, partd under tmp), a digest per group."""
    import dask
    import dask.bag as db

    t0 = time.perf_counter()
    with dask.config.set(scheduler="processes", num_workers=workers, temporary_directory=str(tmp)):
        lines = db.read_text([str(p) for p in input_files(folder)], blocksize="64MiB",
                             linedelimiter="\n", encoding="utf-8")
        groups = lines.map(strip_newline).filter(has_word).groupby(first_word)
        result = dict(groups.map(lambda kv: (kv[0], digest(kv[1]))).compute())
    return result, {"job_s": time.perf_counter() - t0}


def spark_groupby(folder: Path, tmp: Path, workers: int = 2) -> tuple[dict[str, list], dict[str, float]]:
    """PySpark local[workers]: textFile, (key, line) pairs, groupByKey, a digest per key."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    t0 = time.perf_counter()
    spark = (SparkSession.builder.master(f"local[{workers}]").appName("shuffle-bench")
             .config("spark.ui.enabled", "false")
             .config("spark.driver.memory", "2g")
             .config("spark.local.dir", str(tmp))
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    t1 = time.perf_counter()
    try:
        rdd = spark.sparkContext.textFile(str(folder))
        pairs = rdd.filter(has_word).map(lambda line: (first_word(line), line))
        result = dict(pairs.groupByKey().mapValues(digest).collect())
        t2 = time.perf_counter()
    finally:
        spark.stop()
    t3 = time.perf_counter()
    return result, {"startup_s": t1 - t0, "job_s": t2 - t1, "stop_s": t3 - t2}


def main() -> None:
    way, folder, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    tmp = Path(sys.argv[4]) if len(sys.argv) > 4 else Path(out).parent
    if way == "plain":
        t0 = time.perf_counter()
        result, timings = plain_reference(folder), {}
        timings["job_s"] = time.perf_counter() - t0
    elif way == "dask":
        result, timings = dask_groupby(folder, tmp)
    elif way == "spark":
        result, timings = spark_groupby(folder, tmp)
    else:
        raise SystemExit(f"unknown way {way!r}: expected plain, dask or spark")
    out.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(timings), flush=True)


if __name__ == "__main__":
    main()
