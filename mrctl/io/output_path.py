"""Where a job's output may go, checked before any work: never onto an input file, never where
a later run would read it as input, never a directory, and only under a parent that can exist.
"""

from __future__ import annotations

import glob
from pathlib import Path

from mrctl.errors import SpecError


def check_output_path(output: Path, inputs: tuple[Path, ...], patterns: list[str], base: Path,
                      where: str) -> None:
    """Raise SpecError (exit 2) when `output` may not be written; `patterns` are the input
    patterns as given (files, directories, globs), relative to `base`."""
    out = output.resolve()
    if out.is_dir():
        raise SpecError(f"{where}: {output} is a directory; give a file path such as "
                        f"{output / 'result.json'}")
    _check_parent(out, where)
    if out in inputs:
        raise SpecError(f"{where}: {output} is also an input file: the run would overwrite its own "
                        "input; choose another output path")
    for pattern in patterns:
        root = (base / pattern).resolve()
        if root.is_dir() and out.is_relative_to(root):
            hidden = any(part.startswith(".") for part in out.relative_to(root).parts)
            if not hidden:  # a directory's listing skips hidden files, so those are safe
                raise SpecError(
                    f"{where}: {output} is inside the input directory {root}: a later run would read "
                    "it as input; write it elsewhere, or list the inputs with a glob that excludes it")
        elif not root.is_dir() and not root.is_file() and glob.has_magic(pattern):
            if out.match(str(base.resolve() / pattern)) or out in _globbed(base, pattern):
                raise SpecError(f"{where}: {output} matches the input pattern {pattern!r}: a later run "
                                "would read it as input; write it elsewhere")


def _check_parent(out: Path, where: str) -> None:
    """Missing parents are created at the end of a successful run; a file in the way is not."""
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise SpecError(f"{where}: cannot write {out}: {parent} is a file, not a directory")
            return


def _globbed(base: Path, pattern: str) -> set[Path]:
    return {Path(p).resolve() for p in glob.glob(str(base / pattern), recursive=True)}
