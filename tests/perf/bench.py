"""The benchmark: word count on large inputs, mrctl against the alternatives. Prints markdown.

    python -m tests.perf.bench                 # 100 MB and 500 MB, 3 runs each
    python -m tests.perf.bench --sizes 50 --repeat 1 --skip docker

Inputs are the Gutenberg corpus repeated into 8 files in a temp dir (removed afterwards). Every
run's output is checked against the reference count; wall times are medians. The docker
images must already be built (mrctl images --build).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mrctl.master.driver import run_job
from mrctl.spec.jobspec import JobSpec, Overrides, load_spec
from tests.perf import baselines

ROOT = Path(__file__).resolve().parents[2]
# The eight Gutenberg books beside the checkout, or wherever MRCTL_CORPUS points.
CORPUS = Path(os.environ.get("MRCTL_CORPUS") or ROOT.parent / "shared" / "corpus" / "gutenberg")
JOB = ROOT / "jobspecs" / "wordcount.py"
STREAMING = "mrctl docker, 2 workers, streaming"  # words of a-z only (awk's): their own reference
STREAMING_AWK = f"{STREAMING}, awk mapper and reducer"
STREAMING_RUST = f"{STREAMING}, Rust mapper, awk reducer"


@dataclass
class Row:
    label: str
    times: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    ok: bool = True


def make_input(folder: Path, megabytes: int, files: int = 8) -> list[Path]:
    books = [p.read_bytes() for p in sorted(CORPUS.glob("*.txt"))]
    target = megabytes * 1_000_000 // files
    paths = []
    for i in range(files):
        path = folder / f"part-{i:02d}.txt"
        with path.open("wb") as f:
            written, k = 0, i
            while written < target:
                book = books[k % len(books)]
                f.write(book)
                written += len(book)
                k += 1
        paths.append(path)
    return paths


def expected_json(counts: collections.Counter) -> str:
    return json.dumps(dict(sorted(counts.items())), ensure_ascii=False) + "\n"


def mrctl_run(paths: list[Path], out: Path, backend: str, workers: int, mapper: str,
              chunk_size: int) -> tuple[str, dict[str, float]]:
    spec = JobSpec(
        name="bench", spec_path=ROOT / "jobspecs" / "wordcount.yaml", inputs=tuple(paths),
        module=JOB, mapper=mapper, reducer="SumReducer", combiner="SumReducer",
        output_path=out, output_format="json", reducers=4, chunk_size=chunk_size,
        workers=workers, backend=backend,
    )
    final = run_job(spec)
    phases = dict(final.phase_seconds)
    extra = {"start-up s": phases.get("starting", 0.0), "map s": phases.get("map", 0.0),
             "teardown s": phases.get("teardown", 0.0),
             "redis peak MB": final.redis_peak_bytes / 1e6}
    return out.read_text(encoding="utf-8"), extra


def streaming_run(paths: list[Path], folder: Path, spec_name: str, workers: int,
                  chunk_size: int) -> tuple[str, dict[str, float]]:
    """A streaming example (jobspecs/SPEC_NAME.yaml) on docker; its text output as the JSON the
    other ways write (compared with the ASCII reference: awk reads bytes)."""
    shutil.copy(ROOT / "jobspecs" / f"{spec_name}.yaml", folder / f"{spec_name}.yaml")
    out = folder / "out.txt"
    spec = load_spec(folder / f"{spec_name}.yaml", Overrides(
        inputs=tuple(map(str, paths)), output=str(out), backend="docker", workers=workers,
        chunk_size=str(chunk_size)))
    final = run_job(spec)
    counts = collections.Counter({k: int(v) for k, v in (line.split("\t") for line in
                                                         out.read_text(encoding="utf-8").splitlines())})
    out.unlink()
    return expected_json(counts), {"start-up s": dict(final.phase_seconds).get("starting", 0.0)}


def rust_mapper(folder: Path) -> bool:
    """jobspecs/rust_wordcount built by cargo (offline, static) where wordcount_rust.yaml ships
    it from, under `folder`; False when cargo is missing or fails."""
    target = folder / "rust_wordcount" / "target"
    env = {**os.environ, "RUSTFLAGS": "-C target-feature=+crt-static", "CARGO_TARGET_DIR": str(target)}
    try:
        done = subprocess.run(["cargo", "build", "--release", "--offline", "--manifest-path",
                               str(ROOT / "jobspecs" / "rust_wordcount" / "Cargo.toml")],
                              env=env, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        return False
    return done.returncode == 0


def ascii_counts(paths: list[Path]) -> collections.Counter:
    """The streaming examples' words: runs of a-z after lowercasing, read as bytes (as awk does)."""
    counts: collections.Counter = collections.Counter()
    for path in paths:
        counts.update(w.decode() for w in re.findall(rb"[a-z]+", path.read_bytes().lower()))
    return counts


def configs(args, paths: list[Path], out: Path) -> list[tuple[str, Callable]]:
    chunk = args.chunk_mb << 20
    runs: list[tuple[str, Callable]] = [
        ("python, optimised, 1 process", lambda: (expected_json(baselines.optimised_single(paths)), {})),
        ("python, multiprocessing, 2 processes", lambda: (expected_json(baselines.multiprocess(paths)), {})),
        ("mrctl inline (sequential, map)", lambda: mrctl_run(paths, out, "inline", 1, "WordMapper", chunk)),
        ("mrctl inline (sequential, map_chunk)", lambda: mrctl_run(paths, out, "inline", 1, "FastWordMapper", chunk)),
        ("mrctl local, 2 workers, map_chunk", lambda: mrctl_run(paths, out, "local", 2, "FastWordMapper", chunk)),
    ]
    if "docker" not in args.skip:
        for n in (1, 2, 4):
            runs.append((f"mrctl docker, {n} workers, map_chunk",
                         lambda n=n: mrctl_run(paths, out, "docker", n, "FastWordMapper", chunk)))
        runs.append(("mrctl docker, 2 workers, map",
                     lambda: mrctl_run(paths, out, "docker", 2, "WordMapper", chunk)))
        runs.append((STREAMING_AWK, lambda: streaming_run(paths, out.parent, "wordcount_streaming", 2, chunk)))
        if "rust" not in args.skip and rust_mapper(out.parent):
            runs.append((STREAMING_RUST, lambda: streaming_run(paths, out.parent, "wordcount_rust", 2, chunk)))
    if "alternatives" not in args.skip:
        runs.append(("Dask bag (processes, 2)", lambda: _maybe(baselines.dask_bag(paths))))
        runs.append(("PySpark local[2]", lambda: _maybe(baselines.pyspark_local2(paths))))
    if args.only:
        runs = [(label, run) for label, run in runs if any(part in label for part in args.only.split("|"))]
    return runs


def _maybe(counts):
    return (None, {}) if counts is None else (expected_json(counts), {})


def bench_size(args, megabytes: int) -> list[Row]:
    folder = Path(tempfile.mkdtemp(prefix="mrctl-bench-"))
    try:
        paths = make_input(folder, megabytes)
        reference = expected_json(baselines.optimised_single(paths))
        ascii_reference = None
        rows = []
        for label, run in configs(args, paths, folder / "out.json"):
            row = Row(label)
            if label.startswith(STREAMING) and ascii_reference is None:
                ascii_reference = expected_json(ascii_counts(paths))
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                text, extra = run()
                row.times.append(time.perf_counter() - t0)
                if text is None:
                    row.ok, row.times = False, []
                    break
                row.ok &= text == (ascii_reference if label.startswith(STREAMING) else reference)
                for k, v in extra.items():
                    row.extra[k].append(v)
            print(f"  {megabytes} MB  {label}: {[round(t, 2) for t in row.times]}", flush=True)
            rows.append(row)
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def table(megabytes: int, rows: list[Row]) -> str:
    # (--only may leave the sequential run out: its column is then empty)
    base = next((statistics.median(r.times) for r in rows
                 if r.label.startswith("mrctl inline (sequential, map_chunk") and r.times), None)
    lines = [f"\n**{megabytes} MB** (median of {len(rows[0].times)} runs)\n",
             "| run | wall s | MB/s | vs sequential mrctl | output | start-up s | teardown s | Redis peak MB |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        if not r.times:
            lines.append(f"| {r.label} | not installed | | | | | | |")
            continue
        t = statistics.median(r.times)
        med = {k: f"{statistics.median(v):.2f}" for k, v in r.extra.items()}
        lines.append(f"| {r.label} | {t:.2f} | {megabytes / t:.1f} | {f'{t / base:.2f}x' if base else ''} | "
                     f"{'exact' if r.ok else 'WRONG'} | {med.get('start-up s', '')} | "
                     f"{med.get('teardown s', '')} | {med.get('redis peak MB', '')} |")
    return "\n".join(lines)


def targets(megabytes: int, rows: list[Row]) -> str:
    """The issue's targets, each as measured ratio within this run of the benchmark."""
    by = {r.label: r for r in rows if r.times}

    def wall(label: str) -> float | None:
        return statistics.median(by[label].times) if label in by else None

    def extra(label: str, key: str) -> float | None:
        return statistics.median(by[label].extra[key]) if label in by and by[label].extra[key] else None

    d = "mrctl docker, {} workers, map_chunk".format
    checks = [
        ("2 workers / sequential, map_chunk", wall(d(2)), wall("mrctl inline (sequential, map_chunk)"), "<=", 0.6),
        ("2 workers / sequential, map", wall("mrctl docker, 2 workers, map"),
         wall("mrctl inline (sequential, map)"), "<=", 0.6),
        ("Dask bag / 2 workers", wall("Dask bag (processes, 2)"), wall(d(2)), ">=", 1.5),
        ("PySpark local[2] / 2 workers", wall("PySpark local[2]"), wall(d(2)), ">=", 4.0),
        ("2 workers / multiprocessing", wall(d(2)), wall("python, multiprocessing, 2 processes"), "<=", 1.25),
        ("map phase: 1 worker / 2 workers", extra(d(1), "map s"), extra(d(2), "map s"), ">=", 1.6),
    ]
    lines = [f"\n**Targets at {megabytes} MB**\n", "| target | measured | goal | met |", "| --- | ---: | ---: | --- |"]
    for name, a, b, op, goal in checks:
        if a is None or b is None:
            lines.append(f"| {name} | not measured | {op} {goal} | |")
            continue
        ratio = a / b
        met = ratio <= goal if op == "<=" else ratio >= goal
        lines.append(f"| {name} | {ratio:.2f}x | {op} {goal}x | {'yes' if met else 'no'} |")
    peaks = [statistics.median(r.extra["redis peak MB"]) for r in by.values() if r.extra["redis peak MB"]]
    if peaks:
        peak = max(peaks)
        lines.append(f"| Redis peak (max over runs) | {peak:.0f} MB | < 256 MB | {'yes' if peak < 256 else 'no'} |")
    for key, label in (("start-up s", "start-up, Redis + 4 workers"), ("teardown s", "teardown, Redis + 4 workers")):
        if (v := extra(d(4), key)) is not None:
            lines.append(f"| {label} | {v:.2f} s | < 3 s | {'yes' if v < 3 else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,500", help="input sizes in MB, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-mb", type=int, default=8)
    parser.add_argument("--skip", default="", help="comma-separated: docker, rust, alternatives")
    parser.add_argument("--only", default="", help="|-separated: run only the ways whose label contains one, "
                                                   "e.g. 'multiprocessing|docker, 2 workers'")
    args = parser.parse_args()
    results = {mb: bench_size(args, mb) for mb in (int(s) for s in args.sizes.split(","))}
    print(f"\n{time.strftime('%Y-%m-%d')}, {platform.node()}: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    for mb, rows in results.items():
        print(table(mb, rows))
        print(targets(mb, rows))


if __name__ == "__main__":
    main()
