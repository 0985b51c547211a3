"""Job parameters: `params:` in the spec and `--param NAME=VALUE` on the command line, plain
values that job code reads as `self.params` (like mrjob's passthrough options, declared)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from mrctl.errors import SpecError
from mrctl.io import codec


def merge_params(value: Any, flags: tuple[tuple[str, Any], ...] = ()) -> dict[str, Any]:
    """The spec's `params:` mapping, then each `--param` over it; SpecError if not plain data."""
    if value is None:
        value = {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise SpecError(f"expected a mapping of names to plain values, got {value!r}")
    params = {**value, **dict(flags)}
    for name, param in params.items():
        if why := codec.plain_error(param):
            raise SpecError(f"{name}: expected plain data (str, int, float, bool, None, lists, "
                            f"mappings), got {why}")
    return params


def parse_param(text: str) -> tuple[str, Any]:
    """`--param NAME=VALUE`: the value is read as YAML (`0.85` a float, `[a, b]` a list)."""
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise SpecError(f"--param: expected NAME=VALUE with NAME a Python identifier, got {text!r}")
    try:
        return name, yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as exc:
        raise SpecError(f"--param {name}: the value is not valid YAML: {exc}") from None
