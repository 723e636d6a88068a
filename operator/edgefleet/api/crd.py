"""CustomResourceDefinitions generated from the pydantic models (the single source).

pydantic emits JSON Schema 2020-12; a CRD needs a *structural* OpenAPI v3.0 schema.
:func:`structural` converts one into the other: ``$ref`` inlined, ``Optional[X]``
collapsed to ``X``, ``const`` to a one-value ``enum``, numeric ``exclusiveMinimum``
to the boolean form, ``propertyNames``/``patternProperties`` key patterns to CEL,
titles dropped, and CEL
rules (``x-kubernetes-validations``) carried over. ``make verify`` regenerates the
files and fails on any difference.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.api.inferencemodel import InferenceModel
from edgefleet.api.meta import GROUP, VERSION
from edgefleet.api.rollout import Rollout

__all__ = ["KINDS", "KindInfo", "crd_for", "structural"]

_DROP = {"title", "additionalProperties:false", "discriminator"}
_READY = '.status.conditions[?(@.type=="Ready")]'


@dataclass(frozen=True)
class KindInfo:
    """Naming and presentation of one kind."""

    model: type[BaseModel]
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    columns: tuple[dict[str, Any], ...]


def _col(
    name: str, path: str, type_: str = "string", priority: int = 0, **extra: str
) -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path, **extra}
    if priority:
        col["priority"] = priority
    return col


_AGE = _col("Age", ".metadata.creationTimestamp", "date")
_READY_COL = _col("Ready", f"{_READY}.status")
_REASON_COL = _col("Reason", f"{_READY}.reason")

KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        InferenceModel,
        "InferenceModel",
        "inferencemodels",
        "inferencemodel",
        ("efmodel", "efim"),
        (
            _col("Version", ".spec.version"),
            _col("Platforms", ".spec.platforms"),
            _READY_COL,
            _REASON_COL,
            _col("Index", ".status.indexDigest", priority=1),
            _AGE,
        ),
    ),
    KindInfo(
        EdgeDevice,
        "EdgeDevice",
        "edgedevices",
        "edgedevice",
        ("efdev", "edgedev"),
        (
            _col("Platform", ".spec.platform"),
            _col("Site", ".metadata.labels.edgefleet\\.io/site"),
            _col("Online", '.status.conditions[?(@.type=="Online")].status'),
            _READY_COL,
            _col("Desired", ".status.desiredVersion"),
            _col("Current", ".status.currentVersion"),
            _col("Last Seen", ".status.lastSeen", "date"),
            _col("Suspended", ".spec.suspended", "boolean", priority=1),
            _AGE,
        ),
    ),
    KindInfo(
        Rollout,
        "Rollout",
        "rollouts",
        "rollout",
        ("efro", "efrollout"),
        (
            _col("Model", ".spec.model.name"),
            _col("Version", ".spec.model.version"),
            _col("Phase", ".status.phase"),
            _col("Step", ".status.currentStep", "integer"),
            _col("Selected", ".status.counts.selected", "integer", priority=1),
            _col("Updated", ".status.counts.updated", "integer"),
            _col("Healthy", ".status.counts.healthy", "integer"),
            _col("Failed", ".status.counts.failed", "integer"),
            _col("Offline", ".status.counts.offline", "integer", priority=1),
            _col("Stable", ".status.stableVersion", priority=1),
            _READY_COL,
            _col("Status", ".status.message"),
            _AGE,
        ),
    ),
)


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _inline({**target, **rest}, defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _collapse_optional(node: dict[str, Any]) -> dict[str, Any]:
    options = node.get("anyOf")
    if not options:
        return node
    non_null = [o for o in options if o.get("type") != "null"]
    if len(non_null) != 1:
        raise ValueError(f"unions are not structural; model them as one-of with CEL: {node}")
    merged = {**{k: v for k, v in node.items() if k != "anyOf"}, **non_null[0]}
    if merged.get("default", ...) is None:
        del merged["default"]
    return merged


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = _collapse_optional(node)
    out: dict[str, Any] = {}
    rules = list(node.get("x-kubernetes-validations", []))
    for key, value in node.items():
        if key in ("title", "discriminator", "x-kubernetes-validations"):
            continue
        if key == "additionalProperties" and value is False:
            continue  # pruning + strict field validation reject unknown fields
        if key == "const":
            out["enum"] = [value]
            continue
        if key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
            continue
        if key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
            continue
        if key in ("propertyNames", "patternProperties"):
            # Structural schemas cannot constrain map keys: a CEL rule does.
            if key == "patternProperties":
                ((pattern, value_schema),) = value.items()
                out["additionalProperties"] = _convert(value_schema)
            else:
                pattern = value["pattern"]
            rules.append(
                {
                    "rule": f"self.all(k, k.matches({json.dumps(pattern)}))",
                    "message": f"keys must match {pattern}",
                }
            )
            continue
        if key == "properties":
            out[key] = {name: _convert(sub) for name, sub in value.items()}
            continue
        if key in ("items", "additionalProperties"):
            out[key] = _convert(value)
            continue
        out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if rules:
        out["x-kubernetes-validations"] = rules
    return out


def structural(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model`` (spec and status, no metadata)."""
    raw = model.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _convert(_inline(raw, defs))
    schema["properties"]["metadata"] = {"type": "object"}
    schema["properties"]["apiVersion"] = {"type": "string"}
    schema["properties"]["kind"] = {"type": "string"}
    schema["required"] = ["spec"]
    return schema


def crd_for(info: KindInfo) -> dict[str, Any]:
    """The full CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "edgefleet"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": ["edgefleet"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(info.columns),
                    "schema": {"openAPIV3Schema": structural(info.model)},
                }
            ],
        },
    }
