"""Cold run against warm run: a 1 MB word count on 2 Docker workers. Prints a markdown table.

    python -m tests.perf.warm_bench                # 5 runs of each way, interleaved
    python -m tests.perf.warm_bench --repeat 9 --size 1000000
    python -m tests.perf.warm_bench --only 'warm, mrctl.run' --repeat 15   # the warm per-job cost

Ways: `mrctl.run` in this process (the job end to end: attach or start, map, reduce, output,
unlock or teardown; imports already done by an untimed first run of each) and `mrctl run` as a
new process (what a user waits for at the prompt: the interpreter and its imports included),
each on a cold cluster (started and torn down by the run) and on a warm one (`mrctl up` once,
before the runs). The job is jobspecs/wordcount.yaml as it is (WordMapper, a combiner, 4
reducers, 4 MiB chunks: one map task). Every output is checked against a plain-Python count.
The images must be built already (mrctl images --build).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mrctl
from mrctl.backends import fleet as clusters
from mrctl.backends import warm

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "jobspecs" / "wordcount.yaml"
CORPUS = ROOT.parent / "shared" / "corpus" / "gutenberg"
WORD = re.compile(r"[^\W\d_]+")


def make_input(folder: Path, size: int) -> Path:
    """`size` bytes of the Gutenberg books (whole lines), or of the standard library's sources."""
    sources = sorted(CORPUS.glob("*.txt")) or sorted(Path(json.__file__).parent.parent.glob("*.py"))
    text = bytearray()
    for path in sources:
        text += path.read_bytes()
        if len(text) >= size:
            break
    cut = text.rfind(b"\n", 0, size) + 1
    path = folder / "input.txt"
    path.write_bytes(bytes(text[:cut]))
    return path


def reference(path: Path) -> str:
    counts: collections.Counter[str] = collections.Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            counts.update(w.lower() for w in WORD.findall(line))
    return json.dumps(dict(sorted(counts.items())), ensure_ascii=False) + "\n"


def ways(data: Path, out: Path, cluster: str) -> dict[str, Callable[[], dict[str, float]]]:
    common = {"inputs": [str(data)], "output": str(out)}
    cli = [sys.executable, "-m", "mrctl", "run", str(SPEC), "--input", str(data), "--output", str(out), "--quiet"]

    def api(**options) -> Callable[[], dict[str, float]]:
        return lambda: dict(mrctl.run(SPEC, **common, **options).snapshot.phase_seconds)

    def process(*flags: str) -> Callable[[], dict[str, float]]:
        return lambda: subprocess.run([*cli, *flags], check=True, cwd=ROOT) and {}

    return {
        "cold, mrctl.run": api(backend="docker", workers=2),
        "warm, mrctl.run": api(cluster=cluster),
        "cold, mrctl run (new process)": process("--backend", "docker", "--workers", "2"),
        "warm, mrctl run (new process)": process("--cluster", cluster),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", type=int, default=1_000_000, help="input bytes")
    parser.add_argument("--only", default="", help="run only the ways whose name contains this "
                        "(e.g. 'warm, mrctl.run': the warm per-job cost alone)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mrctl-warm-bench-") as tmp:
        data = make_input(Path(tmp), args.size)
        size = data.stat().st_size
        expected, out = reference(data), Path(tmp) / "out.json"
        cluster = warm.up(workers=2)
        try:
            runs = {name: way for name, way in ways(data, out, cluster).items() if args.only in name}
            for way in runs.values():  # imports, first loads: not what is measured
                way()
            times: dict[str, list[float]] = {name: [] for name in runs}
            phases: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
            for _ in range(args.repeat):  # interleaved, so that the machine's noise hits all alike
                for name, way in runs.items():
                    out.unlink(missing_ok=True)
                    t0 = time.perf_counter()
                    phases[name].append(way())
                    times[name].append(time.perf_counter() - t0)
                    assert out.read_text(encoding="utf-8") == expected, f"{name}: wrong output"
        finally:
            clusters.down(None, False, cluster)
    print(f"Word count of {size / 1e6:.2f} MB, 2 Docker workers, medians of {args.repeat} "
          "(min-max); every output checked\n")
    print("| way | wall s | min-max s | phases (median s) |\n| --- | ---: | ---: | --- |")
    for name, ts in times.items():
        named = {p for run in phases[name] for p in run}
        median = {p: statistics.median(run.get(p, 0.0) for run in phases[name]) for p in sorted(named)}
        detail = ", ".join(f"{p} {s:.2f}" for p, s in median.items()) or "-"
        print(f"| {name} | {statistics.median(ts):.2f} | {min(ts):.2f}-{max(ts):.2f} | {detail} |")


if __name__ == "__main__":
    main()
