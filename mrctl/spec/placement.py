"""Where Swarm may run a job's workers: the spec's `workers.placement`, in docker compose's
`deploy.placement` terms, so that a compose file's placement reads the same here.

    workers:
      count: 4
      placement:
        constraints: [node.role==worker, node.labels.disk==ssd]   # every one must hold
        preferences: [{spread: node.labels.zone}]                  # spread over a label's values
        max_replicas_per_node: 2                                   # at most 2 workers a node

Only the swarm backend places anything: a single engine (docker, local, inline) has one place,
so there the section is checked and then ignored, as `docker compose up` ignores it outside a
swarm. Redis is not placed: it runs wherever Swarm puts it, reached by name on the overlay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mrctl.spec.doc import SpecDoc, int_value

PLACEMENT_KEYS = ("constraints", "preferences", "max_replicas_per_node")
# Docker's constraint attributes (docs.docker.com, "docker service create --constraint")
_ATTRIBUTE = r"(node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[^\s=!]+)|engine\.labels\.[^\s=!]+)"
_CONSTRAINT = re.compile(rf"\s*{_ATTRIBUTE}\s*(==|!=)\s*[^\s=!]+\s*")
_SPREAD = re.compile(r"\s*(node|engine)\.labels\.[^\s=!]+\s*")


@dataclass(frozen=True)
class Placement:
    """Swarm's placement of worker tasks; empty means anywhere."""

    constraints: tuple[str, ...] = ()
    spread: tuple[str, ...] = ()  # the labels of `preferences: [{spread: LABEL}]`, in order
    max_per_node: int | None = None

    def __bool__(self) -> bool:
        return bool(self.constraints or self.spread or self.max_per_node)

    def describe(self) -> str:
        """"constraints node.role==worker; spread over node.labels.zone; at most 2 a node"."""
        parts = [f"constraints {', '.join(self.constraints)}"] if self.constraints else []
        parts += [f"spread over {label}" for label in self.spread]
        if self.max_per_node:
            parts.append(f"at most {self.max_per_node} a node")
        return "; ".join(parts) or "anywhere"


def parse_placement(doc: SpecDoc, value: Any) -> Placement:
    key = "workers.placement"
    if not isinstance(value, dict):
        raise doc.error(key, f"expected a mapping of {', '.join(PLACEMENT_KEYS)}, got {value!r}")
    doc.check_keys(value, PLACEMENT_KEYS, f"{key}.")
    constraints = _list(doc, f"{key}.constraints", value.get("constraints"))
    for i, constraint in enumerate(constraints):
        if not isinstance(constraint, str) or not _CONSTRAINT.fullmatch(constraint):
            raise doc.error(f"{key}.constraints", f"item {i + 1}: expected ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE "
                            f"with an attribute such as node.role, node.hostname, node.labels.NAME or "
                            f"engine.labels.NAME, got {constraint!r}")
    spread = []
    for i, preference in enumerate(_list(doc, f"{key}.preferences", value.get("preferences"))):
        label = preference.get("spread") if isinstance(preference, dict) and len(preference) == 1 else None
        if not isinstance(label, str) or not _SPREAD.fullmatch(label):
            raise doc.error(f"{key}.preferences", f"item {i + 1}: expected {{spread: node.labels.NAME}}, "
                            f"got {preference!r}")
        spread.append(label.strip())
    most = value.get("max_replicas_per_node")
    if most is not None:
        most = int_value(doc, f"{key}.max_replicas_per_node", most)
    return Placement(tuple("".join(c.split()) for c in constraints), tuple(spread), most)


def _list(doc: SpecDoc, key: str, value: Any) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise doc.error(key, f"expected a list, got {value!r}")
    return value
