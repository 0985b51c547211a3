"""The files a job's code travels with: its modules, and the modules beside them that they import.

A job module may `import helper` where helper.py sits in the job module's own directory, as
mrjob's `FILES` would ship it. Every backend gives the job the same import path: the standard
one of the worker's Python (the standard library, installed packages; never the caller's
current directory: local workers start with `python -P`), then these sibling modules, served
from source by mrctl.worker.loader. They travel with the job modules as source (keys.code), since
docker and swarm workers share no filesystem with the caller; inline runs get them the same way.

What travels: for each job module, every `NAME.py` beside it that it imports (`import NAME`,
`import NAME.x`, `from NAME import x`, at any depth of the code), and those modules' own imports
of siblings, transitively. Not: packages (directories), data files, names only known at run time
(`importlib.import_module(name)`), or a sibling whose name the standard path finds first (a
csv.py beside the job never replaces the standard library's csv).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from mrctl.errors import SpecError

MAX_SIBLING_BYTES = 4 << 20  # all sibling modules of a job together: each worker loads them all


def bundle(modules: Iterable[Path]) -> dict[str, str]:
    """{file name: source} of the job modules and the sibling modules they import; SpecError
    for a sibling that cannot be read or parsed, two different siblings of one name (from two
    job modules' directories), or siblings over MAX_SIBLING_BYTES."""
    files: dict[str, str] = {}
    origins: dict[str, Path] = {}
    for module in modules:
        files[module.name], origins[module.name] = _read(module), module
    queue = list(origins.values())
    while queue:
        current = queue.pop()
        for name in sorted(_imported(files[current.name], current)):
            sibling = current.parent / f"{name}.py"
            if not sibling.is_file():
                continue
            if sibling.name in origins:
                if origins[sibling.name] != sibling:
                    raise SpecError(f"{current}: imports {name}, but {origins[sibling.name]} travels with "
                                    f"the job under that name too; give one of them another name")
                continue
            files[sibling.name], origins[sibling.name] = _read(sibling), sibling
            queue.append(sibling)
    _check_size(files, origins, {m.name for m in modules})
    return files


def _imported(source: str, path: Path) -> set[str]:
    """The top-level names of the absolute imports in `source`."""
    try:
        tree = ast.parse(source, str(path))
    except SyntaxError as exc:
        raise SpecError(f"{path}:{exc.lineno}: syntax error in a module the job imports: {exc.msg}") from None
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read a module the job imports: {exc}") from None


def _check_size(files: dict[str, str], origins: dict[str, Path], modules: set[str]) -> None:
    siblings = {name: len(text.encode()) for name, text in files.items() if name not in modules}
    if sum(siblings.values()) > MAX_SIBLING_BYTES:
        biggest = sorted(siblings, key=siblings.__getitem__, reverse=True)[:3]
        raise SpecError(f"the modules the job imports from beside it are {sum(siblings.values()) / 1e6:.1f} MB "
                        f"(most: {', '.join(str(origins[n]) for n in biggest)}), over "
                        f"{MAX_SIBLING_BYTES >> 20} MiB: install a big library as a package instead")
