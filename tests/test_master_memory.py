"""Issue 23, point 5: the master's memory stays flat while it writes a map-only job's output:
each map task's output is decoded a pair at a time on its way to the file, never as a whole
list (which took some ten times its bytes: 425 MB of master for a 92 MB output).

The master is `mrctl run` on the local backend in a subprocess; its peak RSS is its own
ru_maxrss (not its workers' nor redis-server's), compared with a control run over the same
input that writes nothing. The expected output comes from plain Python."""

from __future__ import annotations

import json

import pytest
from conftest import corpus_files
from perf.master_memory import master_peak_mb, write_job


def _expected(text: str) -> str:
    return "".join(json.dumps({"key": word, "value": 1}, ensure_ascii=False) + "\n"
                   for line in text.splitlines() for word in line.split())


@pytest.mark.slow
def test_a_map_only_output_goes_to_its_file_without_growing_the_master(tmp_path):
    books = b"".join(p.read_bytes() for p in corpus_files()) * 2  # ~6.6 MB: two 4 MiB map tasks
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "books.txt").write_bytes(books)
    peaks = {}
    for name, mapper in (("control", "Nothing"), ("words", "Words")):
        write_job(tmp_path, name, mapper, None, workers=2, chunk="4MiB")
        peaks[name], proc = master_peak_mb(["run", f"{name}.yaml", "--plain", "-o", f"{name}.jsonl"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    output = (tmp_path / "words.jsonl").read_text(encoding="utf-8")
    assert output == _expected(books.decode("utf-8", errors="replace"))
    size_mb = len(output.encode()) / 1e6
    growth = peaks["words"] - peaks["control"]
    print(f"map-only output {size_mb:.1f} MB: master peak {peaks['words']:.0f} MB, "
          f"control {peaks['control']:.0f} MB")
    assert growth < size_mb / 2, f"the master grew {growth:.0f} MB writing a {size_mb:.0f} MB output"
