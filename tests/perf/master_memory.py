"""The master's peak memory while it writes a large output (issue 23, point 5): the same pairs
(every word of the Gutenberg corpus repeated to N MB, as (word, 1)) written by a map-only job
and by the same job through a reducer, against a control run that reads the same input and
writes nothing (what the master needs whatever the output: imports, the input window, Redis).

    python -m tests.perf.master_memory [--mb 20] [--workers 2] [--chunk 4MiB]

Each way is `mrctl run SPEC --backend local --plain` in a subprocess, as a user runs it, in a
small wrapper that runs the CLI in its own process and writes that process's ru_maxrss
(RUSAGE_SELF: the master's own, not its workers' or redis-server's) when it exits. The input
and everything the runs write live in a temp dir, removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("MRCTL_CORPUS") or ROOT.parent / "shared" / "corpus" / "gutenberg")  # as bench's

# Runs `mrctl ARGS` in this very process and writes its peak RSS (KiB) to argv[1] at exit
PEAK_WRAPPER = """import atexit, resource, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
sys.argv = ["mrctl", *sys.argv[2:]]
from mrctl.cli.main import main
main()
"""

JOB = '''
from mrctl import Mapper, Reducer


class Words(Mapper):
    def map(self, line):
        for word in line.split():
            yield word, 1


class Nothing(Mapper):
    """The same reading and splitting, no output: the control."""

    def map(self, line):
        line.split()
        yield from ()


class Each(Reducer):
    def reduce(self, word, ones):
        for one in ones:
            yield word, one
'''

WAYS = {  # way -> (mapper, reducer or None)
    "control (no output)": ("Nothing", None),
    "map-only": ("Words", None),
    "through 4 reducers": ("Words", "Each"),
}


def master_peak_mb(args: list[str], cwd: Path, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
    """Run `mrctl ARGS` in cwd; (its own peak RSS in MB, the finished process)."""
    peak = cwd / ".master-peak"
    peak.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, str(peak), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    return (int(peak.read_text()) * 1024 / 1e6 if peak.exists() else float("nan")), proc


def write_job(folder: Path, name: str, mapper: str, reducer: str | None, workers: int, chunk: str) -> Path:
    """A spec (and its module) reading folder/data/ on the local backend."""
    (folder / "words.py").write_text(JOB)
    job = f"{{module: words.py, mapper: {mapper}" + (f", reducer: {reducer}}}" if reducer else "}")
    spec = folder / f"{name}.yaml"
    spec.write_text(f"name: {name}\ninput: data/\njob: {job}\nreducers: {4 if reducer else 0}\n"
                    f"backend: local\nworkers: {workers}\nchunk_size: {chunk}\n")
    return spec


def repeated_corpus(folder: Path, mb: float, books_at: Path = CORPUS) -> int:
    """The corpus repeated into about `mb` MB of text in files of four copies; bytes written."""
    books = b"".join(p.read_bytes() for p in sorted(books_at.glob("*.txt")))
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    while written < mb * 1e6:
        (folder / f"part{written // len(books)}.txt").write_bytes(books * 4)
        written += 4 * len(books)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20, help="input size in MB")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", default="4MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mrctl-master-memory-") as tmp:
        folder = Path(tmp)
        size = repeated_corpus(folder / "data", args.mb)
        print(f"{size / 1e6:.1f} MB of input, local backend, {args.workers} workers, {args.chunk} chunks\n")
        print("| way | output MB | master peak RSS MB | above the control MB |")
        print("| --- | ---: | ---: | ---: |")
        control = None
        for way, (mapper, reducer) in WAYS.items():
            name = way.split()[0].replace("-", "")
            spec = write_job(folder, name, mapper, reducer, args.workers, args.chunk)
            out = folder / f"{name}.jsonl"
            peak, proc = master_peak_mb(["run", spec.name, "--plain", "-o", out.name], folder)
            if proc.returncode != 0:
                print(f"| {way} | failed: exit {proc.returncode}: {proc.stderr.strip()[-300:]} | | |")
                continue
            control = peak if control is None else control
            print(f"| {way} | {out.stat().st_size / 1e6:.1f} | {peak:.0f} | {peak - control:.0f} |")
            out.unlink()


if __name__ == "__main__":
    main()
