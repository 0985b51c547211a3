"""The Python API validates like the CLI (issue 24, point 6): every flag of `mrctl run --help`,
read from the command itself, is a keyword of `mrctl.run` by the same name; a bad value gives
the exception whose message the CLI prints (exit 2); a good one works. The expected messages
come from the real CLI in a subprocess, the expected output from plain Python."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys

import pytest
import typer
from conftest import ROOT, computed_once, corpus_files, run_shared_dir
from jobs import WORDCOUNT

import mrctl
from mrctl.cli.main import app
from mrctl.master.options import resolve
from mrctl.spec.jobspec import load_spec

WORD = re.compile(r"[^\W\d_]+")


def _options(command: str) -> dict[str, typer.core.TyperOption]:
    """The command's options by their long flag, as typer built them (its own click)."""
    cmd = typer.main.get_command(app).commands[command]
    return {next(o for o in p.opts if o.startswith("--")): p for p in cmd.params if p.param_type_name == "option"}


RUN_FLAGS = _options("run")


@pytest.fixture(scope="module")
def spec():
    """A wordcount spec on the inline backend with a tiny input: a check that is missed runs a
    short job in this process (the test then fails on the missing error), never a cluster. One
    folder for the whole test run, so that the CLI's messages, which may name the spec, are
    computed once for every process (_cli_error)."""
    home = run_shared_dir() / "api-options"

    def write() -> bytes:
        home.mkdir(exist_ok=True)
        (home / "wordcount.py").write_text(WORDCOUNT)
        (home / "in.txt").write_text("the cat\nthe hat\n")
        (home / "wordcount.yaml").write_text(
            "name: wc\ninput: in.txt\njob: {module: wordcount.py, mapper: WordMapper, "
            "reducer: SumReducer}\nbackend: inline\nworkers: 1\noutput: wc.json\n")
        return b"written"

    computed_once("api-options spec", write)
    return home / "wordcount.yaml"


def _cli_error(spec, *argv: str) -> tuple[int, str]:
    """`mrctl run SPEC ARGV...`'s exit code and its stderr, by the real command (once per test
    run for each ARGV: the path and JobSpec forms, in any process, compare with the same)."""
    def run() -> bytes:
        proc = subprocess.run([sys.executable, "-m", "mrctl", "run", str(spec), *argv], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        return json.dumps([proc.returncode, proc.stderr]).encode()

    settings = {name: os.environ.get(name) for name in ("MRCTL_BACKEND", "MRCTL_WORKERS", "DOCKER_HOST")}
    code, stderr = json.loads(computed_once(json.dumps(["mrctl run", str(spec), *argv, settings]), run))
    return code, stderr


def _argv(values: dict) -> list[str]:
    """The flags that say what `values` (mrctl.run's keywords) say."""
    argv: list[str] = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        for one in value if isinstance(value, list) else [value]:
            argv += [flag] if one is True else [flag, str(one)]
    return argv


def test_the_run_command_has_its_flags_and_mrjob_shares_them():
    assert len(RUN_FLAGS) >= 25 and {"--chunk-size", "--backend", "--docker-host", "--registry", "--chaos",
                                     "--input", "--timeline", "--json"} <= set(RUN_FLAGS)
    # mrctl mrjob names its inputs and output its own way and has no params; all else is shared
    assert set(_options("mrjob")) == set(RUN_FLAGS) - {"--input", "--param"}


@pytest.mark.parametrize("flag", sorted(RUN_FLAGS))
def test_every_run_flag_is_a_keyword_of_mrctl_run(flag, spec):
    name = flag[2:].replace("-", "_")
    assert RUN_FLAGS[flag].name == name  # the flag's Python name is its keyword
    code, stderr = _cli_error(spec, "--backend", "lcoal")
    assert code == 2
    # the flag at its default, beside a bad backend: refused for the backend, not as unknown
    with pytest.raises(mrctl.SpecError) as info:
        mrctl.run(spec, **{name: RUN_FLAGS[flag].default, "backend": "lcoal"})
    assert stderr == f"mrctl: error: {info.value}\n"


BAD = [
    {"chunk_size": "64KB!"}, {"chunk_size": "0"}, {"chunk_size": "-4MiB"}, {"chunk_size": "4 parsecs"},
    {"backend": "lcoal"}, {"workers": -1}, {"workers": 0}, {"workers": 100_000}, {"reducers": -2},
    {"max_attempts": 0}, {"max_worker_restarts": -1}, {"task_timeout": 0.0}, {"task_timeout": -5.0},
    {"chaos": "kill=x"}, {"chaos": "explode"}, {"chaos": "kill=1,every=-1"},
    {"redis_memory": "1kb"}, {"redis_memory": "lots"}, {"redis_memory": "0"},
    {"registry": "bad host"}, {"registry": "http://127.0.0.1:5000"}, {"timeline": "run.gif"},
    {"param": ["1x=2"]}, {"param": ["a=[1"]}, {"cluster": "dev", "workers": 3}, {"cluster": "dev", "keep": True},
    {"cluster": "dev", "backend": "local"},
]


@pytest.mark.slow
@pytest.mark.parametrize("form", ["path", "JobSpec"])
@pytest.mark.parametrize("bad", BAD, ids=lambda bad: ",".join(f"{k}={v}" for k, v in bad.items()))
def test_a_bad_value_gives_the_clis_message(bad, form, spec):
    code, stderr = _cli_error(spec, *_argv(bad))
    assert code == 2 and stderr.startswith("mrctl: error: ")
    with pytest.raises(mrctl.SpecError) as info:
        mrctl.run(spec if form == "path" else load_spec(spec), **bad)
    assert stderr == f"mrctl: error: {info.value}\n"
    assert info.value.exit_code == code


def _count(paths) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                counts.update(w.lower() for w in WORD.findall(line))
    return dict(counts)


@pytest.mark.slow
def test_a_size_string_and_the_view_keywords_work(tmp_path, capsys, spec):
    book = min((p for p in corpus_files() if p.stat().st_size > 3 * 65536), key=lambda p: p.stat().st_size)
    size = book.stat().st_size
    picture = tmp_path / "run.html"
    result = mrctl.run(spec, input=str(book), output=tmp_path / "wc.jsonl", backend="inline",
                       chunk_size="64KiB", reducers=3, param=["unused=1"], json=True, timeline=str(picture))
    assert dict(result.pairs()) == _count([book])
    # 64 KiB chunks cut on line boundaries: about size/64Ki map tasks, not the default 4 MiB's one
    assert size // 65536 <= result.snapshot.map.total <= size // 65536 + 2
    assert result.snapshot.reduce.total == 3
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # --json's summary line
    assert summary["status"] == "succeeded"
    assert picture.read_text(encoding="utf-8").lstrip().lower().startswith(("<!doctype html", "<html"))


def test_keywords_over_environment_over_spec(monkeypatch, spec):
    monkeypatch.setenv("MRCTL_BACKEND", "lcoal")
    code, stderr = _cli_error(spec)
    with pytest.raises(mrctl.SpecError) as info:
        mrctl.run(spec)
    assert stderr == f"mrctl: error: {info.value}\n" and "MRCTL_BACKEND" in stderr
    loaded = load_spec(spec, environ={})
    env = {"DOCKER_HOST": "tcp://10.9.9.9:2375", "MRCTL_WORKERS": str(loaded.workers + 1), "MRCTL_BACKEND": "local"}
    under_env = resolve(spec, {}, env)
    assert (under_env.options.docker_host, under_env.job.workers, under_env.job.backend) == (
        "tcp://10.9.9.9:2375", loaded.workers + 1, "local")
    over = resolve(spec, {"docker_host": "ssh://me@node", "workers": loaded.workers + 2, "backend": "inline"}, env)
    assert (over.options.docker_host, over.job.workers, over.job.backend) == (
        "ssh://me@node", loaded.workers + 2, "inline")
    assert resolve(spec, {}, {}).options.docker_host is None and resolve(spec, {}, {}).job == loaded
