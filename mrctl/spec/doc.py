"""The job spec file as data: its YAML, the line of every key (for messages such as
`wordcount.yaml:7: reducers: ...`), and the small checks every section's values go through.
Every failure is a SpecError naming the file, the line and the key."""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import yaml

from mrctl.errors import SpecError


class SpecDoc:
    """The spec's data plus the line of every key, for messages like `file:7: key: ...`."""

    def __init__(self, path: Path, shown: str) -> None:
        self.path, self.shown, self.lines = path, shown, {}
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(f"{shown}: no such job spec file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{shown}: cannot read the job spec: {exc}") from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise SpecError(f"{shown}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
        if node is None:
            raise SpecError(f"{shown}: the job spec is empty; it needs at least name, input and job")
        if not isinstance(self.data, dict):
            raise SpecError(f"{shown}:{node.start_mark.line + 1}: expected a mapping of keys "
                            "(name:, input:, job: ...) at the top level")
        self._index(node, "")

    def _index(self, node: yaml.Node, prefix: str) -> None:
        """Lines of mapping keys (`output.path`) and of list items (`steps[1].mapper`)."""
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = f"{prefix}{key.value}"
                self.lines[name] = key.start_mark.line + 1
                self._index(value, name + ".")
        elif isinstance(node, yaml.SequenceNode) and prefix:
            for i, item in enumerate(node.value):
                name = f"{prefix[:-1]}[{i}]"
                self.lines[name] = item.start_mark.line + 1
                self._index(item, name + ".")

    def error(self, key: str, message: str) -> SpecError:
        line, parent = self.lines.get(key), key
        while line is None and "." in parent:  # the nearest enclosing key that has a line
            parent = parent.rsplit(".", 1)[0]
            line = self.lines.get(parent)
        return SpecError(f"{self.shown}{f':{line}' if line else ''}: {key}: {message}")

    def check_keys(self, mapping: dict, allowed: tuple[str, ...], prefix: str = "") -> None:
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of {', '.join(allowed)}"
                raise self.error(f"{prefix}{key}", f"unknown key{hint}")

    def require(self, mapping: dict, key: str, prefix: str = "") -> Any:
        if key not in mapping or mapping[key] is None:
            raise self.error(f"{prefix}{key}", "missing (required)")
        return mapping[key]

def int_value(doc: SpecDoc, key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise doc.error(key, f"expected an integer >= {minimum}, got {value!r}")
    return value


def number_value(doc: SpecDoc, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise doc.error(key, f"expected a finite number of seconds > 0, got {value!r}")
    return float(value)


def bool_value(doc: SpecDoc, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise doc.error(key, f"expected true or false, got {value!r}")
    return value


def choice_value(doc: SpecDoc | None, key: str, value: Any, choices: tuple[str, ...], where: str = "") -> str:
    if value not in choices:
        message = f"expected one of {', '.join(choices)}, got {value!r}"
        raise doc.error(key, message) if doc else SpecError(f"{where}: {message}")
    return value


def string_value(doc: SpecDoc, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise doc.error(key, f"expected a non-empty string, got {value!r}")
    return value
