"""Building the invalid-object cases of tests/cases.py: the valid examples in
``manifests/examples/``, a ``Case`` that breaks one thing in a deep copy of one, and the
``set_at``/``delete_at`` breakers."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["EXAMPLES", "Case", "D", "M", "R", "delete_at", "example", "example_objects", "set_at"]

EXAMPLES = Path(__file__).resolve().parent.parent / "manifests" / "examples"


def example_objects() -> list[dict[str, Any]]:
    """Every object in the examples, in apply order."""
    docs: list[dict[str, Any]] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def example(kind: str) -> dict[str, Any]:
    """A deep copy of the first example of ``kind``."""
    for doc in example_objects():
        if doc["kind"] == kind:
            return copy.deepcopy(doc)
    raise LookupError(kind)


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    breaks: Callable[[dict[str, Any]], None]
    mentions: str
    #: What pydantic's error must mention too (the rule's words), where checked.
    model_mentions: str | None = None

    def build(self) -> dict[str, Any]:
        obj = example(self.kind)
        self.breaks(obj)
        return obj


def set_at(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def delete_at(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        del node[last]

    return apply


D, M, R = "EdgeDevice", "InferenceModel", "Rollout"
