"""The run history is this user's alone (issue 24, point 2): its directory is 0700 and its file
0600 (tightened, with a warning, when they were looser), another uid cannot read it, secret
params never reach its bytes, and `mrctl doctor` reports loose modes.

Each test gives its runs a state directory of its own (XDG_STATE_HOME, MRCTL_HISTORY unset), in
a world-traversable directory under /tmp, so that only the modes mrctl sets keep uid 65534 out.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from conftest import ROOT, corpus_files, sequential_wordcount
from jobs import WORDCOUNT

from mrctl.errors import SpecError
from mrctl.observe.history import History
from mrctl.spec.jobspec import load_spec

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
SECRET_JOB = WORDCOUNT + '''

class GatedMapper(WordMapper):
    """Counts words only when it got the real secrets: the record is redacted, not the job."""

    def map(self, line):
        if self.params["db_password"] == {password!r} and self.params["api_token"] == {token!r}:
            yield from super().map(line)


class LeakyMapper(WordMapper):
    def map(self, line):
        raise ValueError("cannot log in with " + self.params["db_password"])
'''


@pytest.fixture
def home() -> Iterator[Path]:
    """A folder any user may enter (0755), under /tmp, removed after the test."""
    folder = Path(tempfile.mkdtemp(prefix="mrctl-i24-history-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "XDG_STATE_HOME": str(home / "state")}
    env.pop("MRCTL_HISTORY")
    return env


def _mrctl(home: Path, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrctl", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=_env(home))


def _spec(folder: Path, source: str, mapper: str = "WordMapper", extra: str = "") -> tuple[Path, Path]:
    """An inline word count of a few thousand corpus lines; (spec, its input)."""
    folder.mkdir(exist_ok=True)
    lines = corpus_files()[0].read_text(encoding="utf-8", errors="replace").splitlines(True)[:3000]
    (folder / "in.txt").write_text("".join(lines), encoding="utf-8")
    (folder / "job.py").write_text(source)
    spec = folder / "job.yaml"
    spec.write_text(f"name: private\ninput: in.txt\njob: {{module: job.py, mapper: {mapper}, reducer: SumReducer}}\n"
                    f"output: out.json\nbackend: inline\n{extra}")
    return spec, folder / "in.txt"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_another_uid_cannot_read_the_history_a_run_leaves(home, tmp_path):
    spec, data = _spec(tmp_path / "job", WORDCOUNT)
    run = _mrctl(home, "run", spec, "--quiet")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "job" / "out.json").read_text() == sequential_wordcount([data])
    state, db = home / "state" / "mrctl", home / "state" / "mrctl" / "history.sqlite"
    beside = home / "state" / "readable.txt"  # the control: uid 65534 gets this far
    beside.write_text("anyone\n")
    beside.chmod(0o644)
    assert subprocess.run([*NOBODY, "cat", str(beside)], capture_output=True, text=True).stdout == "anyone\n"
    for what in ([*NOBODY, "cat", str(db)], [*NOBODY, "ls", str(state)]):
        denied = subprocess.run(what, capture_output=True, text=True)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied
        assert denied.stdout == ""
    assert (_mode(state), _mode(db)) == (0o700, 0o600)


@pytest.mark.slow
def test_loose_modes_are_tightened_with_one_warning_naming_them(home, tmp_path):
    state, db = home / "state" / "mrctl", home / "state" / "mrctl" / "history.sqlite"
    state.mkdir(parents=True)
    with History(db):  # a history from before: a real SQLite file
        pass
    state.chmod(0o755)
    db.chmod(0o644)
    spec, _ = _spec(tmp_path / "job", WORDCOUNT)
    first = _mrctl(home, "run", spec, "--plain")  # --quiet prints only errors
    assert first.returncode == 0, first.stderr
    assert (_mode(state), _mode(db)) == (0o700, 0o600)
    warnings = [line for line in first.stderr.splitlines() if "readable by other users" in line]
    assert len(warnings) == 2, first.stderr
    assert f"{state} was 0755" in warnings[0] and "made it 0700" in warnings[0]
    assert f"{db} was 0644" in warnings[1] and "made it 0600" in warnings[1]
    second = _mrctl(home, "run", spec, "--plain")
    assert second.returncode == 0 and "readable by other users" not in second.stderr, second.stderr
    with History(db) as h:
        assert [row.status for row in h.runs()] == ["succeeded", "succeeded"]


def _history_bytes(db: Path) -> bytes:
    """Every byte of the history's files, and every record decompressed (zstd would hide a
    plain value from a look at the raw bytes alone)."""
    raw = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
    with sqlite3.connect(db) as conn:
        blobs = [zstandard.ZstdDecompressor().decompress(b) for (b,) in conn.execute("SELECT record FROM runs")]
    assert blobs
    return raw + b"".join(blobs)


@pytest.mark.slow
def test_secret_params_never_reach_the_history_file(home, tmp_path):
    password, token = f"hunter2-{secrets.token_hex(8)}", f"tok-{secrets.token_hex(8)}"
    source = SECRET_JOB.format(password=password, token=token)
    extra = f"params: {{db_password: {password}, top: 10}}\n"
    spec, data = _spec(tmp_path / "ok", source, "GatedMapper", extra)
    ok = _mrctl(home, "run", spec, "--quiet", "--param", f"api_token={token}")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "ok" / "out.json").read_text() == sequential_wordcount([data])  # the job saw them
    failing, _ = _spec(tmp_path / "leaky", source, "LeakyMapper", extra)
    failed = _mrctl(home, "run", failing, "--quiet", "--max-attempts", "1")
    assert failed.returncode == 1 and "cannot log in with" in failed.stderr
    db = home / "state" / "mrctl" / "history.sqlite"
    stored = _history_bytes(db)
    assert password.encode() not in stored and token.encode() not in stored
    shown = _mrctl(home, "show", "--json")  # the newest run: the failed one
    record = json.loads(shown.stdout)
    assert record["params"] == {"db_password": "***", "top": 10}
    assert 'db_password: "***"' in record["spec_text"] and "top: 10" in record["spec_text"]
    assert any("cannot log in with ***" in a["error"] for a in record["attempts"]), record["attempts"]
    with History(db) as h:
        first = h.runs()[-1].job_id  # the run that succeeded
    shown = _mrctl(home, "show", first).stdout
    assert "params: api_token='***', db_password='***', top=10" in shown, shown
    for args in (("show", "--json", first), ("show", "--json"), ("show",)):
        text = _mrctl(home, *args).stdout
        assert text and password not in text and token not in text


@pytest.mark.slow
def test_keep_secrets_keeps_them_as_given(home, tmp_path):
    password = f"kept-{secrets.token_hex(8)}"
    spec, _ = _spec(tmp_path / "kept", WORDCOUNT, extra=f"params: {{db_password: {password}}}\n"
                    "history: {keep_secrets: true}\n")
    assert _mrctl(home, "run", spec, "--quiet").returncode == 0
    record = json.loads(_mrctl(home, "show", "--json").stdout)
    assert record["params"] == {"db_password": password}


@pytest.mark.parametrize(("history", "message"), [
    ("{keep_secret: true}", "job.yaml:6: history.keep_secret: unknown key; did you mean 'keep_secrets'?"),
    ("{keep_secrets: maybe}", "job.yaml:6: history.keep_secrets: expected true or false, got 'maybe'"),
    ("true", "job.yaml:6: history: expected a mapping such as {keep_secrets: true}"),
])
def test_the_history_key_is_validated_like_every_other(tmp_path, history, message):
    spec, _ = _spec(tmp_path / "bad", WORDCOUNT, extra=f"history: {history}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert str(caught.value).endswith(message)


@pytest.mark.slow
def test_doctor_reports_loose_modes(home):
    state = home / "state" / "mrctl"
    state.mkdir(parents=True)
    with History(state / "history.sqlite"):
        pass
    (state / "history.sqlite").chmod(0o644)
    state.chmod(0o755)

    def private_check() -> dict:
        proc = subprocess.run([sys.executable, "-m", "mrctl", "doctor", "--json"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env={**_env(home), "DOCKER_HOST": "tcp://127.0.0.1:1"})
        assert "Traceback" not in proc.stderr, proc.stderr
        return next(c for c in json.loads(proc.stdout)["checks"] if c["name"] == "private files")

    loose = private_check()
    assert loose["status"] == "warn"
    assert f"{state} is 0755" in loose["detail"] and f"{state / 'history.sqlite'} is 0644" in loose["detail"]
    assert (_mode(state), _mode(state / "history.sqlite")) == (0o755, 0o644)  # doctor only looks
    state.chmod(0o700)
    (state / "history.sqlite").chmod(0o600)
    assert private_check()["status"] == "ok"
