"""crds/ is exactly what hack/generate.py makes from the models, and is structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edgefleet.api.crd import KINDS, crd_for

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_KEYS = {
    "$ref",
    "anyOf",
    "oneOf",
    "allOf",
    "const",
    "title",
    "$defs",
    "propertyNames",
    "uniqueItems",
    "patternProperties",
}


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_committed_crd_is_current(info):
    committed = yaml.safe_load((ROOT / "crds" / f"{info.plural}.edgefleet.io.yaml").read_text())
    assert committed == crd_for(info), "crds/ is stale: run `make generate`"


def _walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(info):
    schema = crd_for(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        if path.endswith(".properties") or path.endswith("x-kubernetes-validations"):
            continue
        bad = FORBIDDEN_KEYS & set(node)
        assert not bad, f"{path} has non-structural keys {bad}"
        if "properties" in node or "items" in node:
            assert "type" in node, f"{path} lacks a type"


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_every_field_is_documented(info):
    schema = crd_for(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    undocumented = [
        p
        for p, n in _walk(spec)
        if ".properties." in p
        and p.count(".")
        and "type" in n
        and "description" not in n
        and not p.endswith(("items", "additionalProperties"))
    ]
    assert not [p for p in undocumented if "counts" not in p and "facts" not in p], undocumented
