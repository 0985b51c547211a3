"""What an mrjob script asks of its runner, told by mrjob itself, in a process of its own.

    python -m mrctl.mrjob.probe SCRIPT OUT.json [SCRIPT ARGS...]

This is the part of an mrjob runner that reads the job: it imports the script (not as
__main__), finds its MRJob class, makes the job with the script's options as mrjob's own
runners do (`MRJob(args)`), and writes to OUT.json its steps (`_steps_desc`), the options each
task is run with (file options renamed to their place in the task's working directory, as
mrjob's WorkingDirManager names them), the files and directories to ship (FILES, DIRS, file
options), SORT_VALUES and the Hadoop-only settings mrctl refuses. It runs in a subprocess
so that the master never runs job code, as `python SCRIPT --steps` does for mrjob's runners.

An error in the script or its options ends this process with the script's own message
(argparse's exit 2 for a bad option) on stderr.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any


def job_class_name(source: str, filename: str) -> str | None:
    """The class the script runs (`X.run()` under `if __name__ == '__main__'`), if it says."""
    for node in ast.walk(ast.parse(source, filename=filename)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "run"
                and isinstance(node.func.value, ast.Name) and not node.args):
            return node.func.value.id
    return None


def load_job_class(script: Path) -> type:
    from mrjob.job import MRJob

    source = script.read_text(encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"mrjob_script_{script.stem}", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(script.parent))  # as `python SCRIPT` would: its directory first
    sys.modules[spec.name] = module  # mrjob finds the script's path through it (inspect)
    spec.loader.exec_module(module)
    named = job_class_name(source, str(script))
    found = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, MRJob) and v.__module__ == module.__name__]
    chosen = [c for c in found if c.__name__ == named] or found
    if len(chosen) != 1:
        raise SystemExit(f"{script}: expected one MRJob subclass (or `X.run()` naming one), "
                         f"found {len(found)}: {', '.join(c.__name__ for c in found) or 'none'}")
    return chosen[0]


def describe(script: Path, args: list[str]) -> dict[str, Any]:
    from mrjob.setup import WorkingDirManager, parse_legacy_hash_path

    cls = load_job_class(script)
    try:
        job = cls(args)
    except ValueError as exc:  # mrjob's parser, given args, raises instead of exiting
        print(f"{script.name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    kwargs = {**job._non_option_kwargs(), **job._job_kwargs()}
    manager = WorkingDirManager()
    task_args: list[str] = []
    for arg in kwargs["extra_args"]:
        if isinstance(arg, dict):  # a file option: the task sees the file's name in its directory
            manager.add(**arg)
            task_args.append(manager.name(**arg))
        else:
            task_args.append(arg)
    for path in kwargs["upload_files"]:
        manager.add(**parse_legacy_hash_path("file", path, must_name="upload_files"))
    files = {name: os.path.abspath(path) for name, path in manager.name_to_path("file").items()}
    dirs = {}
    for path in kwargs["upload_dirs"]:
        entry = parse_legacy_hash_path("dir", path, must_name="upload_dirs")
        dirs[entry["name"] or os.path.basename(entry["path"].rstrip(os.sep))] = os.path.abspath(entry["path"])
    return {
        "class": cls.__name__,
        "steps": job._steps_desc(),
        "task_args": task_args,
        "files": files,
        "dirs": dirs,
        "archives": list(kwargs["upload_archives"]),
        "sort_values": bool(kwargs["sort_values"]),
        "hadoop_input_format": kwargs["hadoop_input_format"],
        "hadoop_output_format": kwargs["hadoop_output_format"],
        "libjars": list(kwargs["libjars"] or []),
        "partitioner": kwargs["partitioner"],
        "inputs_in_args": list(job.options.args),
    }


def main() -> None:
    script, out, *args = sys.argv[1:]
    found = describe(Path(script).resolve(), args)
    Path(out).write_text(json.dumps(found), encoding="utf-8")


if __name__ == "__main__":
    main()
