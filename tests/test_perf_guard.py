"""A guard against gross performance regressions, cheap enough for CI: the benchmark's shape
on ~20 MB. It fails only when mrctl on 2 workers takes more than 3x the sequential run of the
same job measured in the same session (the cluster's start and removal left out), so a noisy
machine cannot make it flake."""

from __future__ import annotations

import time

import pytest
from conftest import ROOT, corpus_files

from mrctl.master.driver import run_job
from mrctl.spec.jobspec import JobSpec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("clean_docker")]


def _spec(tmp_path, inputs, backend: str, workers: int) -> JobSpec:
    return JobSpec(name="guard", spec_path=ROOT / "jobspecs" / "wordcount.yaml", inputs=tuple(inputs),
                   module=ROOT / "jobspecs" / "wordcount.py", mapper="FastWordMapper",
                   reducer="SumReducer", combiner="SumReducer", output_path=tmp_path / f"{backend}.json",
                   output_format="json", chunk_size=4 << 20, workers=workers, backend=backend)


def test_two_workers_are_not_grossly_slower_than_sequential(tmp_path):
    books = b"".join(p.read_bytes() for p in corpus_files())
    inputs = []
    for i in range(3):
        path = tmp_path / f"part{i}.txt"
        path.write_bytes(books * 2)  # ~6.6 MB each, ~20 MB in all
        inputs.append(path)
    timings = {}
    for backend, workers in (("inline", 1), ("docker", 2)):
        t0 = time.perf_counter()
        phases = dict(run_job(_spec(tmp_path, inputs, backend, workers)).phase_seconds)
        # the job, without the cluster's start and removal: fixed costs (about 2.5 s, measured
        # by the benchmark), which a faster-to-count input (the stand-in corpus of a clone
        # without ../shared: 1.4 s sequential) would otherwise make most of the ratio
        timings[backend] = time.perf_counter() - t0 - phases.get("starting", 0.0) - phases.get("teardown", 0.0)
    assert (tmp_path / "docker.json").read_bytes() == (tmp_path / "inline.json").read_bytes()
    ratio = timings["docker"] / timings["inline"]
    print(f"sequential {timings['inline']:.2f}s, docker 2 workers {timings['docker']:.2f}s, ratio {ratio:.2f}")
    assert ratio < 3.0, timings

