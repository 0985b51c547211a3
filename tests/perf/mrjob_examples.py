"""mrjob's own examples on mrctl against mrjob's local runner: for each example, the whole
run's wall time (medians of --repeat runs) of `python SCRIPT -r local INPUT...` and of
`mrctl mrjob SCRIPT INPUT... --backend B --workers N`, and whether the sorted output lines are
the same bytes. Inputs: the Gutenberg books, repeated --times over in a temp dir (0 keeps
each example's small input), /var/log/dpkg.log, and the classifier's own documents.

    python -m tests.perf.mrjob_examples --repeat 3 --backend docker --workers 2 [--times 4]

mrctl's times include starting and removing the cluster (cold) unless --cluster names a
warm one (mrctl up).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mrjob.examples

from tests.perf.bench import CORPUS

EXAMPLES = Path(mrjob.examples.__file__).parent
ENV = {**os.environ, "PYTHONHASHSEED": "0"}


def cases(books: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    docs = [str(p) for p in sorted((EXAMPLES / "docs-to-classify").iterdir())]
    return {
        "mr_word_freq_count": (books, []),
        "mr_words_containing_u_freq_count": (books, []),
        "mr_most_used_word": (books, []),
        "mr_next_word_stats": (books, []),
        "mr_count_lines_by_file": (books, []),
        "mr_count_lines_right": (books, []),
        "mr_count_lines_wrong": (books, []),
        "mr_wc": (books, []),
        "mr_grep": (books, ["-e", "Holmes"]),
        "mr_log_sampler": (["/var/log/dpkg.log"], ["--sample-size", "100000000"]),
        "mr_text_classifier": (docs, []),
    }


def timed(command: list[str]) -> tuple[float, list[bytes]]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=ENV)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])}... failed:\n{done.stderr.decode()[-2000:]}")
    return elapsed, sorted(done.stdout.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", default="docker")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--times", type=int, default=1, help="the books repeated this many times")
    parser.add_argument("--cluster", default=None, help="a warm cluster (mrctl up) to run on")
    parser.add_argument("--only", default=None, help="comma-separated example names")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mrctl-mrjob-bench-") as tmp:
        books = []
        for book in sorted(CORPUS.glob("*.txt")):
            for i in range(args.times):
                copy = Path(tmp) / f"{i}-{book.name}"
                shutil.copy(book, copy)
                books.append(str(copy))
        size = sum(Path(b).stat().st_size for b in books) / 1e6
        print(f"books: {size:.1f} MB in {len(books)} files; mrctl: {args.backend}, {args.workers} workers"
              f"{', warm cluster ' + args.cluster if args.cluster else ' (cold: cluster start included)'}; "
              f"medians of {args.repeat}\n")
        print("| example | mrjob -r local s | mrctl s | mrctl / mrjob | same lines |")
        print("| --- | ---: | ---: | ---: | --- |")
        chosen = cases(books)
        if args.only:
            chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
        for name, (inputs, script_args) in chosen.items():
            script = str(EXAMPLES / f"{name}.py")
            where = (["--cluster", args.cluster] if args.cluster
                     else ["--backend", args.backend, "-w", str(args.workers)])
            ours = [sys.executable, "-m", "mrctl", "mrjob", script, *inputs, *where, "--quiet", "--", *script_args]
            theirs = [sys.executable, script, "-r", "local", *inputs, *script_args]
            mrjob_runs = [timed(theirs) for _ in range(args.repeat)]
            mrctl_runs = [timed(ours) for _ in range(args.repeat)]
            same = all(r[1] == mrjob_runs[0][1] for r in mrctl_runs)
            a = statistics.median(r[0] for r in mrjob_runs)
            b = statistics.median(r[0] for r in mrctl_runs)
            print(f"| {name} | {a:.2f} | {b:.2f} | {b / a:.2f} | {'yes' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
