"""What a job module's source says, read without running it (the master never runs job code):
its classes, whether each is a Mapper or a Reducer (following inheritance inside the module),
and the methods each defines or inherits there."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

BASES = ("Mapper", "Reducer")
# The method a task will call, by role: a mapper needs map or map_chunk, a reducer reduce.
NEEDED = {"Mapper": ("map", "map_chunk"), "Reducer": ("reduce",)}


@dataclass(frozen=True)
class ClassInfo:
    name: str
    kind: str | None  # "Mapper" | "Reducer", or None when a base comes from elsewhere
    methods: frozenset[str]  # defined in the class or an in-module base


def classes_of(source: str, filename: str) -> dict[str, ClassInfo]:
    """The module's top-level classes. SyntaxError propagates (with its line)."""
    defs = {n.name: n for n in ast.parse(source, filename=filename).body if isinstance(n, ast.ClassDef)}
    return {name: _info(name, defs, set()) for name in defs}


def _info(name: str, defs: dict[str, ast.ClassDef], seen: set[str]) -> ClassInfo:
    node = defs[name]
    methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    kinds: set[str | None] = set()
    for base in node.bases:
        base_name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
        if base_name in BASES:
            kinds.add(base_name)
        elif base_name in defs and base_name not in seen:
            parent = _info(base_name, defs, seen | {name})
            kinds.add(parent.kind)
            methods |= parent.methods
        else:
            kinds.add(None)  # a base imported from elsewhere: its kind cannot be read here
    known = kinds - {None}
    kind = known.pop() if len(known) == 1 and None not in kinds else None
    return ClassInfo(name, kind, frozenset(methods))


def role_problem(info: ClassInfo, role: str, module: Path) -> str | None:
    """Why class `info` cannot play `role` (mapper | reducer | combiner), or None."""
    wanted = "Mapper" if role == "mapper" else "Reducer"
    if info.kind is not None and info.kind != wanted:
        return (f"{info.name} in {module.name} is a {info.kind}, but the {role} must be a "
                f"subclass of mrctl.{wanted}")
    if info.kind == wanted and not info.methods & set(NEEDED[wanted]):
        return f"{info.name} in {module.name} defines no {' or '.join(NEEDED[wanted])}()"
    return None
