"""Redis memory per task (issue 23.2): N one-line map tasks (a word a line, from the Gutenberg
corpus), word count on 2 workers, local backend (or docker). Prints, for each N, the Redis
peak through a roomy Redis and through a 16 MiB one, the input's size, the peak above the
input per task, the map phase's seconds; medians of --repeat runs, each output checked
against a plain count (a run that fails says how).

    python -m tests.perf.task_memory [--tasks 10000,30000,100000] [--repeat 3] [--backend local]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.perf.bench import CORPUS

JOB = """from mrctl import Mapper, Reducer


class Words(Mapper):
    def map(self, line):
        for w in line.split():
            yield w, 1


class Sum(Reducer):
    def reduce(self, key, values):
        return sum(values)
"""


def make_input(folder: Path, tasks: int) -> tuple[Path, collections.Counter]:
    words = [w for path in sorted(CORPUS.glob("*.txt"))[:2] for w in path.read_text(encoding="utf-8").split()]
    rng = random.Random(tasks)
    lines = [rng.choice(words) for _ in range(tasks)]
    path = folder / f"lines-{tasks}.txt"
    path.write_text("".join(f"{w}\n" for w in lines), encoding="utf-8")
    return path, collections.Counter(lines)


def run_once(folder: Path, path: Path, expected: collections.Counter, backend: str, memory: str) -> dict:
    (folder / "job.py").write_text(JOB)
    spec = folder / "tiny.yaml"
    spec.write_text(f"name: tiny\ninput: {path}\njob: {{module: job.py, mapper: Words, reducer: Sum}}\n"
                    "reducers: 4\nchunk_size: 1\n")
    out = folder / "out.json"
    out.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "mrctl", "run", str(spec), "--backend", backend, "--workers", "2",
                           "--redis-memory", memory, "--json", "-o", str(out)],
                          cwd=folder, capture_output=True, text=True, timeout=1800)
    summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
    if proc.returncode != 0:
        return {"failed": f"exit {proc.returncode}: {(summary.get('error') or proc.stderr)[:60]}"}
    assert json.loads(out.read_text(encoding="utf-8")) == dict(expected), "wrong output"
    return {"peak": summary["redis_peak_bytes"], "map_s": dict(summary["phase_seconds"])["map"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="10000,30000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", default="local")
    args = parser.parse_args()
    print(f"{args.backend}, 2 workers, one word a line, chunk_size 1; medians of {args.repeat}\n")
    print("| tasks | input | peak (256 MiB Redis) | above input, per task | map s | 16 MiB Redis: peak | map s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="mrctl-taskmem-") as tmp:
        folder = Path(tmp)
        for tasks in (int(t) for t in args.tasks.split(",")):
            path, expected = make_input(folder, tasks)
            size = path.stat().st_size
            cells = [f"{tasks:,}", f"{size / 1e6:.2f} MB"]
            for memory in ("256MiB", "16MiB"):
                runs = [run_once(folder, path, expected, args.backend, memory) for _ in range(args.repeat)]
                failed = [r["failed"] for r in runs if "failed" in r]
                if failed:
                    cells += [failed[0], "", ""] if memory == "256MiB" else [failed[0], ""]
                    continue
                peak = statistics.median(r["peak"] for r in runs)
                cells.append(f"{peak / 1e6:.1f} MB")
                if memory == "256MiB":
                    cells.append(f"{(peak - size) / tasks:.0f} B")
                cells.append(f"{statistics.median(r['map_s'] for r in runs):.1f}")
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
