"""Task throughput: the word count over the Gutenberg corpus (3.3 MB) cut into 300-byte chunks
(about 11,000 map tasks), so that a task's own work is nothing and the engine's cost per task
is all there is. Prints the map phase's seconds and tasks a second, medians of --repeat runs,
each run's output checked against a plain count.

    python -m tests.perf.tiny_tasks --repeat 3 [--backends local,docker] [--chunk 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from mrctl.master.driver import run_job
from mrctl.spec.jobspec import JobSpec
from tests.perf.baselines import optimised_single
from tests.perf.bench import CORPUS, JOB, ROOT, expected_json


def run_once(paths: list[Path], out: Path, backend: str, workers: int, chunk: int) -> tuple[float, int, float]:
    """(map phase seconds, map tasks, whole run seconds) of one run; the output is checked."""
    spec = JobSpec(name="tiny", spec_path=ROOT / "jobspecs" / "wordcount.yaml", inputs=tuple(paths),
                   module=JOB, mapper="WordMapper", reducer="SumReducer", combiner="SumReducer",
                   output_path=out, output_format="json", reducers=4, chunk_size=chunk,
                   workers=workers, backend=backend)
    final = run_job(spec)
    assert out.read_text(encoding="utf-8") == expected_json(optimised_single(paths)), "wrong output"
    return dict(final.phase_seconds)["map"], final.map.total, final.elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="local,docker")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=300, help="chunk size in bytes")
    args = parser.parse_args()
    paths = sorted(CORPUS.glob("*.txt"))
    print(f"{sum(p.stat().st_size for p in paths) / 1e6:.1f} MB in {len(paths)} files, "
          f"{args.chunk}-byte chunks, {args.workers} workers, medians of {args.repeat}\n")
    print("| backend | map tasks | map phase s | tasks/s | whole run s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="mrctl-tiny-") as tmp:
        for backend in args.backends.split(","):
            runs = [run_once(paths, Path(tmp) / "out.json", backend, args.workers, args.chunk)
                    for _ in range(args.repeat)]
            map_s = statistics.median(r[0] for r in runs)
            total = runs[0][1]
            print(f"| {backend} | {total} | {map_s:.2f} | {total / map_s:.0f} | "
                  f"{statistics.median(r[2] for r in runs):.2f} |")


if __name__ == "__main__":
    main()
