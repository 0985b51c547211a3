"""`mrctl mrjob SCRIPT [INPUT...] [OPTIONS] [-- SCRIPT OPTIONS...]`: an mrjob script, unchanged,
on mrctl's cluster (see mrctl.spec.mrjob_script and mrctl.mrjob.bridge).

The command writes a job spec for the script (`job: {mrjob: SCRIPT, args: [...]}`) under mrctl's
cache directory and runs it as `mrctl run` would, so history, timelines and the web page see an
ordinary run; its path is printed, to run it again with `mrctl run`. Without -o the output
lines go to stdout, as mrjob's runners print them, and everything else to stderr.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from mrctl.cli import options as opt
from mrctl.errors import SpecError
from mrctl.host.dirs import cache_dir

_script_args: list[str] = []  # what followed `--`: main() takes it off argv before click reads it


def take_script_args(argv: list[str]) -> list[str]:
    """argv without the script's own options (after `--` in `mrctl mrjob ...`), kept aside."""
    if len(argv) > 1 and argv[1] == "mrjob" and "--" in argv:
        cut = argv.index("--")
        _script_args[:] = argv[cut + 1:]
        return argv[:cut]
    return argv


def write_spec(script: Path, inputs: list[str], args: list[str], output: Path) -> Path:
    """A spec for the script (absolute paths), content-addressed in the cache directory."""
    if not inputs:
        raise SpecError("mrctl mrjob: give at least one INPUT file, directory or glob "
                        "(mrctl reads files, not stdin)")
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", script.stem) or "mrjob"
    spec = {"name": name, "input": [str(Path.cwd() / p) for p in inputs],
            "job": {"mrjob": str(script.resolve()), "args": args}, "output": str(output.resolve())}
    text = json.dumps(spec, indent=2) + "\n"  # JSON is YAML
    path = cache_dir() / "mrjob" / "specs" / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@opt.with_run_options("mrjob")
def mrjob(
    script: Annotated[Path, typer.Argument(help="An mrjob script (a Python file defining an MRJob subclass).")],
    inputs: Annotated[list[str] | None, typer.Argument(help="Input files, directories or globs.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the output lines here (default: print them on stdout, as mrjob does).")] = None,
    **flags: Any,
) -> None:
    """Run an mrjob script's job unchanged on mrctl's cluster; the script's own options go
    after --.

    Example:

    \b
      mrctl mrjob mr_word_freq_count.py books/*.txt --workers 4

    Example:

    \b
      mrctl mrjob mr_log_sampler.py /var/log/dpkg.log -o sample.txt -- --sample-size 10

    Output lines are mrjob's (its OUTPUT_PROTOCOL); sorted, they equal `python SCRIPT -r inline
    INPUT...`. Needs mrjob: pip install 'mrctl[mrjob]'. Exit codes as for mrctl run.
    """
    from mrctl.cli.run import show_run
    from mrctl.master.options import resolve
    from mrctl.master.signals import SignalGuard

    def load(spec: Path) -> Any:
        # the inputs as typed, relative to here: job code sees their names as mrjob's runners
        # show them (`mapreduce.map.input.file` is file://data/x.txt for data/x.txt), while the
        # spec keeps absolute paths, so that `mrctl run` finds them from anywhere
        try:
            return resolve(spec, {**flags, "input": list(inputs or ())})
        except SpecError as exc:  # the spec is ours, not the user's: name the command instead
            said = re.sub(rf"^({re.escape(str(spec))}:\d+: (job\.mrjob: )?|--input: )", "mrctl mrjob: ", str(exc))
            raise SpecError(said.replace(f" (relative to {spec.parent})", "")) from None

    if output is not None:
        spec = write_spec(script, inputs or [], list(_script_args), output)
        run = load(spec)
        typer.echo(f"mrctl: the job's spec (mrctl run it again): {spec}", err=True)
        with SignalGuard():
            show_run(run)
        return
    scratch = Path(tempfile.mkdtemp(prefix="mrctl-mrjob-"))
    try:
        spec = write_spec(script, inputs or [], list(_script_args), scratch / "output.txt")
        with SignalGuard():
            show_run(load(spec), out=sys.stderr)
        with (scratch / "output.txt").open("rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer)
        sys.stdout.flush()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
