"""The example jobs in jobspecs/, on their own samples, on every backend, against independent
plain-Python computations of their contracts (tests/references.py, which imports nothing of
mrctl). The README's recipes run these same specs."""

from __future__ import annotations

import json

import pytest
import references
from conftest import ROOT, SESSION, SESSION_LABEL

import mrctl

SPECS = ROOT / "jobspecs"
DATA = SPECS / "data"
DPKG = [DATA / "dpkg.log", DATA / "dpkg.log.1.gz"]
TEXTS = [DATA / "cafe.txt", DATA / "mapreduce.txt", DATA / "metamorphosis.txt"]
BACKENDS = ["inline", "local", pytest.param("docker", marks=pytest.mark.docker)]

EXPECTED = {
    "inverted_index": lambda: references.inverted_index(TEXTS),
    "dpkg_log": lambda: references.dpkg_log(DPKG),
    "dpkg_top": lambda: references.dpkg_top(DPKG),
    "groupby": lambda: references.groupby(DATA / "packages.csv", "section", "installed_size"),
}


def _run(name: str, backend: str, tmp_path, request=None, **overrides) -> tuple[dict, mrctl.RunResult]:
    if backend == "docker" and request is not None:
        request.getfixturevalue("clean_docker")  # images ready; no container may be left
    out = tmp_path / f"{name}.json"
    result = mrctl.run(SPECS / f"{name}.yaml", backend=backend, output=str(out), **{"workers": 2, **overrides})
    return json.loads(out.read_text(encoding="utf-8")), result


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_matches_its_plain_python_contract(name, backend, tmp_path, request):
    got, result = _run(name, backend, tmp_path, request)
    assert got == EXPECTED[name]()
    assert result.status == "succeeded"


def test_samples_are_what_the_contracts_need():
    """Each sample makes its example say something: several files per word, several events and
    days, more than ten installed packages, sections of several packages, dangling nodes."""
    index = references.inverted_index(TEXTS)
    assert any(len(files) == 3 for files in index.values()) and any(len(f) == 1 for f in index.values())
    assert len({key.split()[0] for key in references.dpkg_log(DPKG)}) >= 2
    assert len({key.split()[1] for key in references.dpkg_log(DPKG)}) >= 4
    assert len(references.dpkg_top(DPKG)) == 10
    groups = references.groupby(DATA / "packages.csv", "section", "installed_size")
    assert len(groups) > 5 and max(g["count"] for g in groups.values()) > 10
    links = references._graph(DATA / "debian-deps.tsv")
    assert 300 <= len(links) and sum(not t for t in links.values()) > 10


def _close(got: dict[str, float], expected: dict[str, float]) -> float:
    assert got.keys() == expected.keys()
    return max(abs(got[k] - expected[k]) / expected[k] for k in expected)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_pagerank_matches_a_plain_power_iteration(backend, tmp_path, request):
    got, result = _run("pagerank", backend, tmp_path, request)
    assert _close(got, references.pagerank(DATA / "debian-deps.tsv", 0.85, 10)) < 1e-9
    assert abs(sum(got.values()) - 1) < 1e-9
    labels = [label for label, _ in result.snapshot.step_seconds]
    assert labels[0] == "step 1/12 (graph)" and labels[-1] == "step 12/12 (ranks)"
    assert labels[1:-1] == [f"step {i + 2}/12 (iterate, iteration {i + 1}/10)" for i in range(10)]
    assert result.counters["pagerank"]["nodes"] == len(got)


@pytest.mark.slow
def test_pagerank_params_and_early_stop(tmp_path):
    """--param damping/iterations/tolerance reach every step; `until` stops the loop once no
    rank moves more than the tolerance, as the plain loop does."""
    params = {"damping": 0.5, "iterations": 200, "tolerance": 1e-12}
    got, result = _run("pagerank", "local", tmp_path, params=params)
    expected = references.pagerank(DATA / "debian-deps.tsv", 0.5, 200, 1e-12)
    assert _close(got, expected) < 1e-9
    iterations = len(result.snapshot.step_seconds) - 2
    assert 5 < iterations < 200 and result.snapshot.steps == 202


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
def test_pagerank_iterates_on_one_cluster_of_four_workers(tmp_path, docker_host):
    """The issue's own check: ten iterations as one job on one cluster (one Redis container,
    four workers, nothing restarted between steps)."""
    with docker_host.creations({SESSION_LABEL: SESSION}) as made:  # live: the engine's log keeps 256 events
        got, result = _run("pagerank", "docker", tmp_path, workers=4)
    assert _close(got, references.pagerank(DATA / "debian-deps.tsv", 0.85, 10)) < 1e-9
    assert sorted(n.rsplit("-", 2)[-2] + "-" + n.rsplit("-", 1)[-1] if "worker" in n else "redis" for n in made) \
        == ["redis", "worker-1", "worker-2", "worker-3", "worker-4"], made
    assert len(result.snapshot.step_seconds) == 12
