"""Does the live view slow a job down? Runs the same job with the rich live view (under a
pseudo-terminal, via util-linux `script`) and with `--plain`, alternating, and prints a table.

    python -m tests.perf.view_overhead              # 50 MB, local backend, 2 workers, 5 runs each

A third mode, `--plain` under the same pseudo-terminal, separates the cost of the terminal
itself from the cost of the view. It also times the view itself: rendering one snapshot of a
4-worker job into a terminal-sized console, the work the live view does five times a second.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from mrctl.observe.live_view import render_live
from mrctl.observe.snapshot import Event, JobSnapshot, PhaseProgress, WorkerRow
from tests.perf.bench import ROOT, make_input

SPEC = ROOT / "jobspecs" / "wordcount.yaml"


def run_once(paths: list[Path], out: Path, pty: bool, plain: bool, workers: int) -> float:
    argv = [sys.executable, "-m", "mrctl", "run", str(SPEC), "--backend", "local", "--workers", str(workers),
            "--chunk-size", "4MiB", "--output", str(out)]
    for p in paths:
        argv += ["--input", str(p)]
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if plain:
        argv.append("--plain")
    if pty:  # `script` gives the run a real pseudo-terminal, so mrctl picks the live view
        argv = ["script", "-qefc", " ".join(argv), "/dev/null"]
        env["TERM"] = "xterm-256color"
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def render_cost(repeat: int = 200) -> float:
    """Milliseconds to render one live-view frame of a busy 4-worker job."""
    snap = JobSnapshot(
        "20261128-000000-abcd", "wordcount", "map", 12.5,
        map=PhaseProgress(30, 64, 4, 200 << 20, 500 << 20, 1.3),
        reduce=PhaseProgress(0, 4),
        workers=tuple(WorkerRow(f"worker-{i}", "mapping", f"m:{30 + i}", 1, 7, 0.2) for i in range(1, 5)),
        events=tuple(Event(float(i), "retry", f"m:{i} attempt 1 on worker-2: lost") for i in range(6)),
        retries=6,
    )
    console = Console(file=io.StringIO(), width=120, height=40, force_terminal=True, color_system="truecolor")
    t0 = time.perf_counter()
    for _ in range(repeat):
        console.print(render_live(snap))
    return (time.perf_counter() - t0) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("script") is None:
        sys.exit("needs util-linux `script` for the pseudo-terminal")
    folder = Path(tempfile.mkdtemp(prefix="mrctl-view-"))
    try:
        paths = make_input(folder, args.megabytes)
        modes = {"live view (pty)": (True, False), "--plain (pty)": (True, True), "--plain": (False, True)}
        times: dict[str, list[float]] = {label: [] for label in modes}
        for _ in range(args.repeat):  # interleaved, so machine noise hits every mode alike
            for i, (label, (pty, plain)) in enumerate(modes.items()):
                times[label].append(run_once(paths, folder / f"out{i}.json", pty, plain, args.workers))
        outputs = {(folder / f"out{i}.json").read_bytes() for i in range(len(modes))}
        same = len(outputs) == 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base = statistics.median(times["--plain"])
    print(f"\n{args.megabytes} MB, local backend, {args.workers} workers, median of {args.repeat} runs "
          f"(outputs identical: {same})\n")
    print("| output mode | wall s (median) | runs | vs --plain |\n| --- | ---: | --- | ---: |")
    for label, ts in times.items():
        print(f"| {label} | {statistics.median(ts):.2f} | {', '.join(f'{t:.2f}' for t in ts)} | "
              f"{statistics.median(ts) / base:.3f}x |")
    cost = render_cost()
    print(f"\none live-view frame renders in {cost:.2f} ms; at 5 frames/s that is {cost * 5 / 10:.2f}% "
          "of one core")


if __name__ == "__main__":
    main()
