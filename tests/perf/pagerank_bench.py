"""The PageRank benchmark: the Debian package graph, 10 iterations, mrctl against the alternatives.

    python -m tests.perf.pagerank_bench --repeat 3
    python -m tests.perf.pagerank_bench --ways plain,spark --nodes-limit 5000 --repeat 1

The graph (every package of this machine's apt lists, see debian_graph.py) is built in a temp dir
and removed afterwards. The ways, run interleaved (one run of each way per round, so that a slow
spell of a noisy machine hits them all):

- plain: the plain-Python loop over dicts, in this process;
- spark: PySpark local[2], one fresh subprocess of SPARK_PYTHON per run (a venv with pyspark, not
  the project's), reported twice: the subprocess's whole wall time (Python, JVM and session
  start-up, the job, stop) and the job alone (reading the graph, 10 iterations, collecting);
- mrctl-local, mrctl-docker: `mrctl.run("jobspecs/pagerank.yaml", backend=..., workers=2)`.
  A missing spec or a failing run is reported as "not available (reason)" and the rest goes on.

Every result is checked against a plain-Python reference computed once beforehand (same nodes,
each rank within 1e-9 relative, ranks summing to 1); the table prints the max relative error.
Wall times are medians; ratios are against the plain loop in the same session.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.perf import debian_graph, pagerank_baselines
from tests.perf.pagerank_baselines import DAMPING, ITERATIONS

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "jobspecs" / "pagerank.yaml"
BASELINES = Path(pagerank_baselines.__file__).resolve()
SPARK_PYTHON = Path(os.environ.get("SPARK_PYTHON") or "python-with-pyspark")  # set SPARK_PYTHON
WAYS = ("plain", "spark", "mrctl-local", "mrctl-docker")
TOLERANCE = 1e-9


class NotAvailable(Exception):
    """This way cannot run here; the message says why."""


@dataclass
class Row:
    label: str
    times: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)  # max relative error of each run
    sums: list[float] = field(default_factory=list)  # total rank of each run
    extra: dict[str, list[float]] = field(default_factory=dict)
    unavailable: str | None = None

    def add(self, seconds: float, ranks: dict[str, float], reference: dict[str, float]) -> None:
        self.times.append(seconds)
        self.errors.append(pagerank_baselines.max_relative_error(ranks, reference))
        self.sums.append(math.fsum(ranks.values()))


# --- the ways: each returns (ranks, {extra timing name: seconds}) ------------------------------

def run_plain(graph: Path, folder: Path) -> tuple[dict[str, float], dict[str, float]]:
    return pagerank_baselines.plain_pagerank(graph, DAMPING, ITERATIONS), {}


def run_spark(graph: Path, folder: Path) -> tuple[dict[str, float], dict[str, float]]:
    """One fresh PySpark process: its stdout's last line is its own timings as JSON."""
    if not SPARK_PYTHON.exists():
        raise NotAvailable(f"{SPARK_PYTHON} missing: set SPARK_PYTHON to a Python with pyspark "
                           "(python3 -m venv /tmp/spark && /tmp/spark/bin/pip install pyspark)")
    out = folder / "spark-ranks.json"
    proc = subprocess.run([str(SPARK_PYTHON), str(BASELINES), "spark", str(graph), str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no stderr"]
        raise NotAvailable(f"spark exited {proc.returncode}: {tail[0]}")
    timings = json.loads(proc.stdout.strip().splitlines()[-1])
    ranks = json.loads(out.read_text(encoding="utf-8"))
    out.unlink()
    return ranks, timings


def rank_of(value: Any) -> float:
    """The rank in one output value of mrctl's pagerank job: a number, or the first float of a
    list (e.g. [rank, targets]), or a dict's "rank"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict) and "rank" in value:
        return float(value["rank"])
    if isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, float):
                return item
    raise NotAvailable(f"cannot find a rank in the output value {value!r:.80}")


def mrctl_way(backend: str) -> Callable[[Path, Path], tuple[dict[str, float], dict[str, float]]]:
    def run_mrctl(graph: Path, folder: Path) -> tuple[dict[str, float], dict[str, float]]:
        if not SPEC.exists():
            raise NotAvailable(f"{SPEC.relative_to(ROOT)} does not exist yet")
        import mrctl

        out = folder / f"pagerank-{backend}.jsonl"
        try:
            result = mrctl.run(str(SPEC), inputs=[str(graph)], backend=backend, workers=2,
                               output=str(out), params={"damping": DAMPING, "iterations": ITERATIONS})
            ranks = {str(k): rank_of(v) for k, v in result.pairs()}
        except NotAvailable:
            raise
        except Exception as e:  # whatever mrctl raises, the table says it and the bench goes on
            first = (str(e).strip().splitlines() or [""])[0]
            raise NotAvailable(f"{type(e).__name__}: {first[:160]}") from e
        finally:
            out.unlink(missing_ok=True)
        phases = dict(result.snapshot.phase_seconds)
        # an iteration's wall time, map and reduce and the step's start (its tasks, fed from
        # the last one's outputs): with --nodes-limit 300 it is the cost of a step on a
        # started cluster beyond its work
        iterations = [s for label, s in result.snapshot.step_seconds if "(iterate, iteration" in label]
        return ranks, {"startup_s": phases.get("starting", 0.0), "teardown_s": phases.get("teardown", 0.0),
                       "iteration_s": sum(iterations) / max(1, len(iterations))}
    return run_mrctl


WAY_RUNS = {"plain": ("python, plain loop, 1 process", run_plain),
            "spark": ("PySpark local[2], whole process", run_spark),
            "mrctl-local": ("mrctl local, 2 workers", mrctl_way("local")),
            "mrctl-docker": ("mrctl docker, 2 workers", mrctl_way("docker"))}
SPARK_JOB_LABEL = "PySpark local[2], job only (excl. start-up)"


# --- the driver ---------------------------------------------------------------------------------

def run_round(ways: list[str], rows: dict[str, Row], graph: Path, folder: Path,
              reference: dict[str, float]) -> None:
    for way in ways:
        row = rows[way]
        if row.unavailable:
            continue
        label, run = WAY_RUNS[way]
        t0 = time.perf_counter()
        try:
            ranks, extra = run(graph, folder)
        except NotAvailable as e:
            row.unavailable = str(e)
            if os.environ.get("BENCH_TRACEBACK"):
                traceback.print_exception(e)
            print(f"  {label}: not available ({e})", flush=True)
            continue
        seconds = time.perf_counter() - t0
        row.add(seconds, ranks, reference)
        for k, v in extra.items():
            row.extra.setdefault(k, []).append(v)
        if way == "spark":
            rows[SPARK_JOB_LABEL].add(extra["compute_s"], ranks, reference)
        shown = ", ".join(f"{k} {v:.2f}" for k, v in extra.items())
        print(f"  {label}: {seconds:.2f} s{f' ({shown})' if shown else ''}, "
              f"max rel err {row.errors[-1]:.2g}", flush=True)


def table(order: list[str], rows: dict[str, Row], plain: float | None) -> str:
    lines = ["| way | wall s (median) | runs | vs plain Python | max rel error | ranks sum | notes |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for key in order:
        r = rows[key]
        label = WAY_RUNS[key][0] if key in WAY_RUNS else key
        if r.unavailable and not r.times:
            lines.append(f"| {label} | not available ({r.unavailable}) | | | | | |")
            continue
        t = statistics.median(r.times)
        err = max(r.errors)
        ok = err <= TOLERANCE and all(abs(s - 1) <= 1e-9 for s in r.sums)
        notes = [f"{k.removesuffix('_s')} {statistics.median(v):.2f} s" for k, v in r.extra.items()
                 if k in ("startup_s", "teardown_s")]
        notes += [f"an iteration {statistics.median(v) * 1000:.0f} ms" for k, v in r.extra.items()
                  if k == "iteration_s"]
        notes += [] if ok else ["WRONG"]
        notes += [f"failed later: {r.unavailable}"] if r.unavailable else []
        ratio = f"{t / plain:.2f}x" if plain else ""
        lines.append(f"| {label} | {t:.2f} | {len(r.times)} | {ratio} | {err:.2g} | "
                     f"{statistics.median(r.sums):.12f} | {'; '.join(notes)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated subset of {','.join(WAYS)}")
    parser.add_argument("--nodes-limit", type=int, default=None,
                        help="only the first N packages by name (edges leaving them dropped)")
    args = parser.parse_args()
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    if unknown := sorted(set(ways) - set(WAYS)):
        parser.error(f"unknown way {unknown[0]!r}; expected some of {','.join(WAYS)}")

    folder = Path(tempfile.mkdtemp(prefix="mrctl-pagerank-"))
    try:
        graph = folder / "debian-deps.tsv"
        nodes, edges = debian_graph.build(graph, args.nodes_limit)
        t0 = time.perf_counter()
        reference = pagerank_baselines.plain_pagerank(graph, DAMPING, ITERATIONS)
        print(f"reference (plain loop): {time.perf_counter() - t0:.2f} s, "
              f"ranks sum to {math.fsum(reference.values())!r}", flush=True)
        rows = {w: Row(WAY_RUNS[w][0]) for w in ways} | {SPARK_JOB_LABEL: Row(SPARK_JOB_LABEL)}
        for i in range(args.repeat):
            print(f"round {i + 1}/{args.repeat}", flush=True)
            run_round(ways, rows, graph, folder, reference)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    order = [w for w in WAYS if w in ways]
    if "spark" in ways:
        order.insert(order.index("spark") + 1, SPARK_JOB_LABEL)
        if rows["spark"].unavailable and not rows["spark"].times:
            order.remove(SPARK_JOB_LABEL)
    plain = statistics.median(rows["plain"].times) if "plain" in ways and rows["plain"].times else None
    print(f"\n{time.strftime('%Y-%m-%d')}, {platform.node()}: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"\n**PageRank, Debian package graph: {nodes} nodes, {edges} edges, d = {DAMPING}, "
          f"{ITERATIONS} iterations** (median of {args.repeat} runs)\n")
    print(table(order, rows, plain))
    if "spark" in ways and rows["spark"].times:
        print("\nPySpark start-up (Python, JVM, SparkSession) is in the whole-process row and not in "
              "the job-only row; the job-only row still includes the JVM's JIT warm-up.")
    if any(max(r.errors) > TOLERANCE for r in rows.values() if r.errors):
        sys.exit(1)


if __name__ == "__main__":
    main()
