"""Secret params are not kept in the run history (nor shown by `mrctl show`, the web page or
`--json`, which all read it), unless the spec says `history: {keep_secrets: true}`.

A param is secret when its name contains `password`, `token`, `secret` or `key`, in any case
(`db_password`, `apiKey`, `GITHUB_TOKEN`; `sort_key` too: a false alarm costs only a value in
the history, a miss leaks one). Its value becomes "***":

- in the record's params;
- in the spec text kept with the record: the value under `params:` and `steps[i].params:`;
- wherever it appears verbatim in the record's other text (an error, a traceback, an event),
  for a string of at least MIN_SCRUBBED characters (a shorter one would blank out ordinary
  words).

Only the record is redacted: the job's code gets its params as given.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import yaml

from mrctl.observe.record import RunRecord

SECRET_WORDS = ("password", "token", "secret", "key")
REDACTED = "***"
MIN_SCRUBBED = 6


def is_secret(name: str) -> bool:
    folded = name.lower()
    return any(word in folded for word in SECRET_WORDS)


def redact(run: RunRecord, step_params: Iterable[dict[str, Any]] = ()) -> RunRecord:
    """`run` with every secret param's value replaced by REDACTED (see the module docstring);
    `step_params`: the params of each step of a `steps:` spec, whose secrets go too."""
    secrets = [v for params in (run.params, *step_params) for k, v in params.items() if is_secret(k)]
    if not secrets:
        return run
    scrubbed = sorted({v for v in secrets if isinstance(v, str) and len(v) >= MIN_SCRUBBED}, key=len, reverse=True)
    data = _scrub(run.to_json(), scrubbed)
    data["params"] = {k: REDACTED if is_secret(k) else v for k, v in run.params.items()}
    data["spec_text"] = redact_spec_text(run.spec_text, scrubbed)
    return RunRecord.from_json(data)


def redact_spec_text(text: str, scrubbed: Sequence[str] = ()) -> str:
    """The spec's YAML with the value of every secret param (top-level and per step) replaced;
    a text that no longer parses (edited since the run started) keeps only a note."""
    try:
        spans = sorted(_secret_spans(yaml.compose(text, Loader=yaml.SafeLoader)), reverse=True)
    except yaml.YAMLError:
        return "(the spec text is left out: it holds secret params and no longer parses)"
    for start, end in spans:
        text = text[:start] + f'"{REDACTED}"' + text[end:]
    return _scrub(text, scrubbed)


def _secret_spans(root: yaml.Node | None) -> Iterator[tuple[int, int]]:
    """(start, end) offsets of the value nodes of secret params."""
    for params in _params_nodes(root):
        for key, value in params.value:
            if isinstance(key, yaml.ScalarNode) and is_secret(str(key.value)):
                yield value.start_mark.index, value.end_mark.index


def _params_nodes(root: yaml.Node | None) -> Iterator[yaml.MappingNode]:
    for key, value in _pairs(root):
        if key == "params" and isinstance(value, yaml.MappingNode):
            yield value
        elif key == "steps" and isinstance(value, yaml.SequenceNode):
            yield from _steps_params(value)


def _steps_params(steps: yaml.SequenceNode) -> Iterator[yaml.MappingNode]:
    """`params:` of every step, in groups (`{repeat: 3, steps: [...]}`) too."""
    for step in steps.value:
        yield from _params_nodes(step)


def _pairs(node: yaml.Node | None) -> Iterator[tuple[str, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                yield str(key.value), value


def _scrub(data: Any, scrubbed: Sequence[str]) -> Any:
    """`data` (plain JSON data) with each of `scrubbed` replaced by REDACTED in every string."""
    if not scrubbed:
        return data
    if isinstance(data, str):
        for secret in scrubbed:
            data = data.replace(secret, REDACTED)
        return data
    if isinstance(data, dict):
        return {k: _scrub(v, scrubbed) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_scrub(v, scrubbed) for v in data]
    return data

