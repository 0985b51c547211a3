"""The shuffle-heavy benchmark (issue 14): every input line crosses the shuffle, with Redis
smaller than the data. mrctl against Dask bag and PySpark on the same input in the same run.

    BENCH_PYTHON=/path/to/venv/bin/python python -m tests.perf.shuffle_bench --sizes 1000,2000 --repeat 1
    python -m tests.perf.shuffle_bench --sizes 50 --ways mrctl

The job: key = the first word of each line, lowercased; value = the line; each key's result is
[count, sha1 hex of its lines sorted and joined by "\\n"] (see shuffle_baselines.py), so the
output is small while every line is shuffled and sorted in its reducer. The input is the
Gutenberg corpus (tests.perf.bench.CORPUS) repeated into N MB of text in 8 files in a temp dir,
removed afterwards with everything else the run writes there. The ways, one run of each per
round, interleaved:

- mrctl: `mrctl run SPEC --backend docker --workers 2 --redis-memory 256mb --json -o OUT`, the
  CLI in a subprocess as a user runs it (the spec, written into the temp dir: reducers 32,
  chunk_size 8MiB; `--reducers` and `--redis-mb` change them: with few reducers a partition
  is larger than Redis can take back at once, and is fed to its reduce task). Wall time is
  the subprocess's; the summary gives the job's own elapsed
  seconds, Redis's peak, the bytes spilled to the master's disk and the phases. The master's
  peak RSS is ru_maxrss of RUSAGE_CHILDREN in a small wrapper process that starts the CLI: the
  largest peak of the CLI process and of any child it waited for. With the docker backend the
  master starts no child processes (the workers and Redis are containers, not its children), so
  it is the master's own.
- dask: Dask bag, processes scheduler, 2 workers, `read_text(blocksize="64MiB")`, `groupby` on
  the key (Dask's disk shuffle), a digest per group;
- spark: PySpark `local[2]`, `textFile`, `groupByKey().mapValues(digest)`.
  Both run as `$BENCH_PYTHON tests/perf/shuffle_baselines.py WAY ...` (BENCH_PYTHON, or
  SPARK_PYTHON: a venv with `dask[bag]` and pyspark; Java for Spark), timed whole (interpreter,
  imports, JVM and session start-up, the job, stop) and for the job alone (as the script reports).

Each way's result is compared key by key with a plain-Python reference (one process, all lines
in a dict) for sizes up to --reference-max-mb, and otherwise with mrctl's result. A way that runs
longer than --timeout-min minutes is stopped and reported as such; a failed run shows its error.
Ratios are against mrctl in the same round.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.perf import shuffle_baselines
from tests.perf.bench import make_input

ROOT = Path(__file__).resolve().parents[2]
BASELINES = Path(shuffle_baselines.__file__).resolve()
BENCH_PYTHON = os.environ.get("BENCH_PYTHON") or os.environ.get("SPARK_PYTHON") or ""
WAYS = ("mrctl", "dask", "spark")
LABELS = {"mrctl": "mrctl docker, 2 workers",
          "dask": "Dask bag groupby (processes, 2)",
          "spark": "PySpark local[2] groupByKey"}
REDIS_MB = 256  # --redis-memory, in MB (mrctl reads "256mb" as 256 * 10**6 bytes)

JOB_MODULE = '''"""Shuffle-heavy job of tests/perf/shuffle_bench.py (the contract: shuffle_baselines.py)."""
import hashlib

from mrctl import Mapper, Reducer


class FirstWordMapper(Mapper):
    def map(self, line):
        words = line.split(None, 1)
        if words:
            yield words[0].lower(), line


class DigestReducer(Reducer):
    def reduce(self, key, values):
        lines = sorted(values)
        return [len(lines), hashlib.sha1("\\n".join(lines).encode("utf-8")).hexdigest()]
'''

SPEC = """name: shuffle-bench
input: input/
job:
  module: shuffle_job.py
  mapper: FirstWordMapper
  reducer: DigestReducer
reducers: {reducers}
chunk_size: 8MiB
workers: 2
"""


class Failed(Exception):
    """This run did not produce a result; the message says why."""


@dataclass
class Row:
    way: str
    times: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    agree: list[str] = field(default_factory=list)
    failure: str | None = None

    def med(self, key: str) -> float | None:
        values = self.extra.get(key)
        return statistics.median(values) if values else None


# --- running a subprocess with its own peak RSS -------------------------------------------------

# A fresh small Python that runs the command and writes RUSAGE_CHILDREN's ru_maxrss (KiB) to
# argv[1]. Not os.wait4 on a child of this process: Linux carries a parent's high-water mark
# into a forked child's ru_maxrss across exec, and this process may be gigabytes (the reference).
RSS_WRAPPER = """import resource, signal, subprocess, sys
p = subprocess.Popen(sys.argv[2:])
signal.signal(signal.SIGTERM, lambda *_: p.send_signal(signal.SIGTERM))
code = p.wait()
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measured(cmd: list[str], folder: Path, name: str, timeout_s: float,
                 env: dict[str, str] | None = None) -> tuple[str, float, float]:
    """Run cmd; (stdout, wall seconds, peak RSS MB of its largest process: RSS_WRAPPER's
    RUSAGE_CHILDREN). Past timeout_s it gets SIGTERM, two minutes later SIGKILL (its whole
    process group), and Failed is raised."""
    out_path, err_path, rss_path = (folder / f"{name}.{x}" for x in ("stdout", "stderr", "maxrss"))
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", RSS_WRAPPER, str(rss_path), *cmd], stdout=out,
                                stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline, stopped = t0 + timeout_s, False
        while proc.poll() is None:
            now = time.perf_counter()
            if now > deadline and not stopped:
                stopped, deadline = True, now + 120  # mrctl removes its containers on SIGTERM
                proc.send_signal(signal.SIGTERM)  # the wrapper passes it on
            elif now > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                deadline = now + 3600
            time.sleep(0.1)
        wall = time.perf_counter() - t0
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    if stopped:
        raise Failed(f"stopped after {timeout_s / 60:.0f} min (did not finish)")
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-12:]) or "no stderr"
        more = f"\nstdout: {stdout.strip()[-2000:]}" if stdout.strip() else ""
        raise Failed(f"exit {proc.returncode}:\n{tail}{more}")
    return stdout, wall, int(rss_path.read_text()) * 1024 / 1e6  # ru_maxrss is in KiB on Linux


# --- the ways: each returns ({key: [count, sha1]}, wall seconds, extras) ------------------------

def mrctl_cli() -> list[str]:
    script = Path(sys.executable).parent / "mrctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mrctl"]


def run_mrctl(folder: Path, timeout_s: float, redis_mb: int = REDIS_MB) -> tuple[dict, float, dict[str, float]]:
    out = folder / "mrctl-out.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = mrctl_cli() + ["run", str(folder / "shuffle.yaml"), "--backend", "docker", "--workers", "2",
                         "--redis-memory", f"{redis_mb}mb", "--json", "-o", str(out)]
    stdout, wall, rss = run_measured(cmd, folder, "mrctl", timeout_s, env)
    summary = json.loads(stdout.strip().splitlines()[-1])
    if summary.get("status") != "succeeded":
        raise Failed(f"status {summary.get('status')}: {summary.get('error')}")
    result = json.loads(out.read_text(encoding="utf-8"))
    out.unlink()
    phases = summary.get("phase_seconds") or {}
    extra = {"job_s": summary["elapsed_seconds"], "redis_peak_mb": summary["redis_peak_bytes"] / 1e6,
             "redis_peak_bytes": summary["redis_peak_bytes"], "rss_mb": rss,
             "spilled_mb": summary["spilled_bytes"] / 1e6}
    extra |= {f"phase {k}": v for k, v in phases.items()}
    return result, wall, extra


def run_baseline(way: str, folder: Path, timeout_s: float) -> tuple[dict, float, dict[str, float]]:
    if not BENCH_PYTHON or not Path(BENCH_PYTHON).exists():
        raise Failed("set BENCH_PYTHON to a Python with dask[bag] and pyspark")
    out, tmp = folder / f"{way}-out.json", folder / f"{way}-tmp"
    tmp.mkdir(exist_ok=True)
    try:
        cmd = [BENCH_PYTHON, str(BASELINES), way, str(folder / "input"), str(out), str(tmp)]
        stdout, wall, _ = run_measured(cmd, folder, way, timeout_s)
        timings = json.loads(stdout.strip().splitlines()[-1])
        result = json.loads(out.read_text(encoding="utf-8"))
    finally:
        out.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return result, wall, {"job_s": timings["job_s"]}


def compare(result: dict, reference: dict) -> str:
    if result == reference:
        return "exact"
    missing, extra = reference.keys() - result.keys(), result.keys() - reference.keys()
    differ = sum(1 for k in reference.keys() & result.keys() if result[k] != reference[k])
    return f"DIFFERS ({differ} keys differ, {len(missing)} missing, {len(extra)} extra)"


# --- the driver ---------------------------------------------------------------------------------

def bench_size(args, megabytes: int, ways: list[str]) -> tuple[dict[str, Row], str]:
    folder = Path(tempfile.mkdtemp(prefix="mrctl-shuffle-"))
    try:
        (folder / "input").mkdir()
        make_input(folder / "input", megabytes)
        (folder / "shuffle_job.py").write_text(JOB_MODULE, encoding="utf-8")
        (folder / "shuffle.yaml").write_text(SPEC.format(reducers=args.reducers), encoding="utf-8")
        reference, against = None, "mrctl"
        if megabytes <= args.reference_max_mb:
            t0 = time.perf_counter()
            reference, against = shuffle_baselines.plain_reference(folder / "input"), "reference"
            print(f"  {megabytes} MB plain-Python reference: {time.perf_counter() - t0:.1f} s, "
                  f"{len(reference)} keys, {sum(v[0] for v in reference.values())} lines", flush=True)
        rows = {w: Row(w) for w in ways}
        for i in range(args.repeat):
            results: dict[str, dict] = {}
            for way in ways:
                row = rows[way]
                try:
                    run = (functools.partial(run_mrctl, redis_mb=args.redis_mb) if way == "mrctl"
                           else lambda f, t, way=way: run_baseline(way, f, t))
                    result, wall, extra = run(folder, args.timeout_min * 60)
                except (Failed, ValueError, KeyError, OSError) as e:
                    row.failure = str(e)
                    print(f"  {megabytes} MB round {i + 1} {LABELS[way]}: FAILED: {e}", flush=True)
                    continue
                results[way] = result
                row.times.append(wall)
                for k, v in extra.items():
                    row.extra.setdefault(k, []).append(v)
                shown = ", ".join(f"{k} {v:.1f}" for k, v in extra.items() if k != "redis_peak_bytes")
                print(f"  {megabytes} MB round {i + 1} {LABELS[way]}: {wall:.1f} s ({shown})", flush=True)
            base = reference if reference is not None else results.get("mrctl")
            for way, result in results.items():
                if base is None:
                    rows[way].agree.append("unchecked (no mrctl result)")
                elif reference is None and way == "mrctl":
                    others = [w for w in results if w != "mrctl"]
                    rows[way].agree.append("(the base)" if not others else
                                           "base; " + ", ".join(f"{w} {compare(results[w], result)}" for w in others))
                else:
                    rows[way].agree.append(f"{compare(result, base)} vs {against}")
        return rows, against
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def table(megabytes: int, rows: dict[str, Row], repeat: int, reducers: int, redis_mb: int) -> str:
    mrctl = rows.get("mrctl")
    base = statistics.median(mrctl.times) if mrctl and mrctl.times else None
    lines = [f"\n**{megabytes} MB** (median of {repeat} run{'s' if repeat > 1 else ''})\n",
             "| size | way | wall s | job alone s | vs mrctl | Redis peak MB | master RSS MB | spilled MB "
             "| agree | notes |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for way, r in rows.items():
        label = LABELS[way]
        if not r.times:
            lines.append(f"| {megabytes} | {label} | {r.failure or 'not run'} | | | | | | | |")
            continue
        t = statistics.median(r.times)

        def fmt(key: str, digits: int = 1, r: Row = r) -> str:
            v = r.med(key)
            return "" if v is None else f"{v:.{digits}f}"

        notes = []
        if way == "mrctl":
            phases = [(k.removeprefix("phase "), r.med(k)) for k in r.extra if k.startswith("phase ")]
            notes.append("phases " + ", ".join(f"{k} {v:.1f}" for k, v in phases))
            peak = max(r.extra["redis_peak_bytes"])
            below = "<" if peak < redis_mb * 1e6 else "NOT <"
            notes.append(f"{reducers} reducers, Redis peak {below} its {redis_mb} MB")
        if r.failure:
            notes.append(f"a run failed: {r.failure.splitlines()[0]}")
        ratio = f"{t / base:.2f}x" if base else ""
        lines.append(f"| {megabytes} | {label} | {t:.1f} | {fmt('job_s')} | {ratio} | {fmt('redis_peak_mb')} "
                     f"| {fmt('rss_mb', 0)} | {fmt('spilled_mb', 0)} | {'; '.join(dict.fromkeys(r.agree))} "
                     f"| {'; '.join(notes)} |")
    failures = [(w, r.failure) for w, r in rows.items() if r.failure and "\n" in r.failure]
    for way, text in failures:
        lines.append(f"\n{LABELS[way]} failed:\n\n```\n{text}\n```")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2000", help="input sizes in MB, comma-separated")
    parser.add_argument("--repeat", type=int, default=1, help="rounds per size (each takes minutes)")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated subset of {','.join(WAYS)}")
    parser.add_argument("--reducers", type=int, default=32, help="mrctl's reducers (partitions)")
    parser.add_argument("--redis-mb", type=int, default=REDIS_MB, help="mrctl's --redis-memory, in MB")
    parser.add_argument("--timeout-min", type=float, default=25, help="stop a run after this many minutes")
    parser.add_argument("--reference-max-mb", type=int, default=1000,
                        help="check against a plain-Python reference up to this size (it holds every line "
                             "in memory); above it, against mrctl's result")
    args = parser.parse_args()
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    if unknown := sorted(set(ways) - set(WAYS)):
        parser.error(f"unknown way {unknown[0]!r}; expected some of {','.join(WAYS)}")
    if "mrctl" in ways:  # build the images now if needed, so that no timed run builds them
        subprocess.run(mrctl_cli() + ["images", "--build"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})

    results: dict[int, tuple[dict[str, Row], str]] = {}
    loads: dict[int, tuple[Any, Any]] = {}
    for mb in (int(s) for s in args.sizes.split(",")):
        before = os.getloadavg()
        results[mb] = bench_size(args, mb, ways)
        loads[mb] = (before, os.getloadavg())

    print(f"\n{time.strftime('%Y-%m-%d')}, {platform.node()}: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    for mb, (rows, _) in results.items():
        (b1, b5, b15), (a1, a5, a15) = loads[mb]
        print(table(mb, rows, args.repeat, args.reducers, args.redis_mb))
        print(f"\nload average (1, 5, 15 min) before {mb} MB: {b1:.2f} {b5:.2f} {b15:.2f}; "
              f"after: {a1:.2f} {a5:.2f} {a15:.2f}")
    wrong = any("DIFFERS" in a for rows, _ in results.values() for r in rows.values() for a in r.agree)
    over = any(max(r.extra.get("redis_peak_bytes", [0])) >= args.redis_mb * 1e6
               for rows, _ in results.values() for r in rows.values())
    if wrong or over:
        sys.exit(1)


if __name__ == "__main__":
    main()
