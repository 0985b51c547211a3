"""How long a new mrctl process takes to start, and which imports it spends that on.

    python -m tests.perf.startup [--repeat 7] [--baseline /path/to/other/venv/bin/python]

Each command runs as a new process, `--repeat` times, interleaved with the baseline's when a
second interpreter is given (a venv with another checkout of mrctl installed, `pip install -e`),
so that a slow spell of a noisy machine hits both. Wall times are medians. Then one run of each
under `python -X importtime`, its import seconds summed by top-level package.

The commands:
- `--help`: the CLI's help (typer's rich formatting included);
- `validate`: the CLI parsing a command and a spec (what every command and worker pays);
- `worker start`: the imports of `python -m mrctl.worker` (Redis, the worker loop; not the CLI),
  without Redis (its heartbeat keeper is forked from it: nothing to import again);
- `run local`: the README's word count on the local backend, 2 workers, `--plain`, end to end.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.perf.bench import ROOT

SPEC = ROOT / "jobspecs" / "wordcount.yaml"
WORKER_IMPORTS = "import mrctl.worker.main, mrctl.broker, mrctl.worker.loop"
COMMANDS = {
    "--help": ["-m", "mrctl", "--help"],
    "validate": ["-m", "mrctl", "validate", str(SPEC)],
    "worker start": ["-c", WORKER_IMPORTS],
    "run local": ["-m", "mrctl", "run", str(SPEC), "--backend", "local", "--workers", "2", "--plain"],
}


def wall(python: str, args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([python, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def imports_by_package(python: str, args: list[str], cwd: Path) -> collections.Counter[str]:
    """Seconds of -X importtime's self time, by top-level package."""
    done = subprocess.run([python, "-X", "importtime", *args], cwd=cwd, capture_output=True, text=True, check=True)
    by: collections.Counter[str] = collections.Counter()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, _, name = line[len("import time:"):].split("|")
            by[name.strip().split(".")[0]] += int(self_us) / 1e6
    return by


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--baseline", help="another interpreter (a venv's python) to compare with")
    args = parser.parse_args()
    pythons = {"this": sys.executable, **({"baseline": args.baseline} if args.baseline else {})}
    times: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)  # the run writes its output here
        for _ in range(args.repeat):
            for command, argv in COMMANDS.items():
                for who, python in pythons.items():
                    times[who, command].append(wall(python, argv, cwd))
        imports = {(who, c): imports_by_package(p, argv, cwd) for who, p in pythons.items()
                   for c, argv in COMMANDS.items()}
    print(f"**A new process's start, median of {args.repeat}** (seconds)\n")
    header = "| command | " + " | ".join(pythons) + (" | ratio |" if args.baseline else "")
    print(header + "\n|" + " --- |" * (header.count("|") - 1))
    for command in COMMANDS:
        medians = [statistics.median(times[who, command]) for who in pythons]
        ratio = f" {medians[0] / medians[1]:.2f} |" if args.baseline else ""
        print(f"| {command} | " + " | ".join(f"{m:.3f}" for m in medians) + " |" + ratio)
    for who in pythons:
        print(f"\n**Imports ({who}, one -X importtime run), seconds by package**\n")
        print("| command | total | largest |\n| --- | ---: | --- |")
        for command in COMMANDS:
            by = imports[who, command]
            top = ", ".join(f"{name} {s:.3f}" for name, s in by.most_common(5))
            print(f"| {command} | {sum(by.values()):.3f} | {top} |")


if __name__ == "__main__":
    main()
