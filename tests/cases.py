"""Invalid objects, one per rule, shared by the pydantic tests and the API-server tests.

Each case starts from a valid example in ``manifests/examples/``, breaks one thing,
and names what the API server's error must mention (the offending field, or the
rule's message where the server reports a whole-object rule).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
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


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        del node[last]

    return apply


D, M, R = "EdgeDevice", "InferenceModel", "Rollout"
_STEPS = "spec.canary.steps"

CASES: tuple[Case, ...] = (
    Case(
        "device-platform-unknown-arch", D, _set("spec.platform", "linux/riscv64"), "spec.platform"
    ),
    Case("device-platform-without-os", D, _set("spec.platform", "arm64"), "spec.platform"),
    Case("device-accelerator-unknown", D, _set("spec.accelerator", "Quantum"), "spec.accelerator"),
    Case("device-suspended-wrong-type", D, _set("spec.suspended", "yes"), "spec.suspended"),
    Case("device-name-too-long", D, _set("metadata.name", "d" * 64), "at most 63 characters"),
    Case(
        "device-label-value-too-long",
        D,
        _set("metadata.labels", {"edgefleet.io/site": "x" * 64}),
        "metadata.labels",
    ),
    Case("device-config-key-invalid", D, _set("spec.config", {"bad-key": "1"}), "spec.config"),
    Case("device-unknown-field", D, _set("spec.replicas", 3), "spec.replicas"),
    Case("model-format-unknown", M, _set("spec.format", "tflite"), "spec.format"),
    Case(
        "model-url-without-sha256", M, _delete("spec.source.url.sha256"), "spec.source.url.sha256"
    ),
    Case(
        "model-sha256-not-hex",
        M,
        _set("spec.source.url.sha256", "abc123"),
        "spec.source.url.sha256",
    ),
    Case(
        "model-source-both",
        M,
        _set("spec.source.oci", {"reference": "registry.example.com/models/x@sha256:" + "a" * 64}),
        "exactly one of url or oci",
    ),
    Case("model-source-neither", M, _set("spec.source", {}), "exactly one of url or oci"),
    Case(
        "model-oci-by-tag",
        M,
        _set("spec.source", {"oci": {"reference": "registry.example.com/models/x:latest"}}),
        "spec.source.oci.reference",
    ),
    Case("model-platforms-empty", M, _set("spec.platforms", []), "spec.platforms"),
    Case(
        "model-platforms-duplicate",
        M,
        _set("spec.platforms", ["linux/amd64", "linux/amd64"]),
        "spec.platforms",
    ),
    Case("model-platform-unknown", M, _set("spec.platforms", ["windows/amd64"]), "spec.platforms"),
    Case("model-version-with-space", M, _set("spec.version", "1.0 beta"), "spec.version"),
    Case(
        "model-probe-negative-tolerance",
        M,
        _set("spec.probe.tolerance", -0.5),
        "spec.probe.tolerance",
    ),
    Case(
        "model-url-not-http",
        M,
        _set("spec.source.url.url", "ftp://models.example.com/m.onnx"),
        "spec.source.url.url",
    ),
    Case("rollout-weight-zero", R, _set(f"{_STEPS}.0", {"setWeight": 0}), "setWeight"),
    Case("rollout-weight-over-100", R, _set(f"{_STEPS}.4", {"setWeight": 101}), "setWeight"),
    Case(
        "rollout-weights-decreasing",
        R,
        _set(_STEPS, [{"setWeight": 50}, {"setWeight": 25}]),
        "strictly increasing",
    ),
    Case(
        "rollout-weights-equal",
        R,
        _set(_STEPS, [{"setWeight": 50}, {"setWeight": 50}]),
        "strictly increasing",
    ),
    Case("rollout-weight-wrong-type", R, _set(f"{_STEPS}.0", {"setWeight": "fifty"}), "setWeight"),
    Case(
        "rollout-step-both",
        R,
        _set(f"{_STEPS}.0", {"setWeight": 10, "pause": {}}),
        "exactly one of setWeight or pause",
    ),
    Case("rollout-step-empty", R, _set(f"{_STEPS}.0", {}), "exactly one of setWeight or pause"),
    Case("rollout-steps-empty", R, _set(_STEPS, []), "spec.canary.steps"),
    Case("rollout-selector-missing", R, _delete("spec.selector"), "spec.selector"),
    Case("rollout-selector-empty", R, _set("spec.selector", {}), "at least one matchLabels"),
    Case(
        "rollout-selector-empty-labels",
        R,
        _set("spec.selector", {"matchLabels": {}}),
        "at least one matchLabels",
    ),
    Case(
        "rollout-selector-in-without-values",
        R,
        _set(
            "spec.selector", {"matchExpressions": [{"key": "edgefleet.io/site", "operator": "In"}]}
        ),
        "values must be non-empty",
    ),
    Case(
        "rollout-pause-negative", R, _set(f"{_STEPS}.1", {"pause": {"duration": "-5m"}}), "duration"
    ),
    Case(
        "rollout-deadline-negative",
        R,
        _set("spec.progressDeadline", "-1h"),
        "spec.progressDeadline",
    ),
    Case(
        "rollout-deadline-no-unit", R, _set("spec.progressDeadline", "15"), "spec.progressDeadline"
    ),
    Case(
        "rollout-max-unavailable-over-100",
        R,
        _set("spec.maxUnavailable", "150%"),
        "spec.maxUnavailable",
    ),
    Case("rollout-priority-negative", R, _set("spec.priority", -1), "spec.priority"),
    Case("rollout-model-missing", R, _delete("spec.model"), "spec.model"),
    # -- objects the API accepted before though no controller could ever satisfy them --
    Case(
        "model-probe-values-do-not-fill-shape",
        M,
        _set("spec.probe.values", [0.1, 0.2, 0.3]),
        "spec.probe.values",
        "values must fill shape",
    ),
    Case(
        "model-probe-shape-larger-than-values",
        M,
        _set("spec.probe.shape", [2, 4]),
        "spec.probe.values",
        "values must fill shape",
    ),
    Case(
        "model-optimization-for-untargeted-platform",
        M,
        _set("spec.platforms", ["linux/arm64"]),
        "spec.optimizations",
        "must be one of spec.platforms",
    ),
    Case(
        "model-host-devices-repeat",
        M,
        _set("spec.hostDevices", ["/dev/video0", "/dev/video0"]),
        "spec.hostDevices",
        "hostDevices must not repeat",
    ),
    Case(
        "rollout-selector-label-key-invalid",
        R,
        _set("spec.selector", {"matchLabels": {"site name": "berlin"}}),
        "spec.selector.matchLabels",
        "valid label keys and values",
    ),
    Case(
        "rollout-selector-label-value-invalid",
        R,
        _set("spec.selector", {"matchLabels": {"edgefleet.io/site": "berlin/mitte"}}),
        "spec.selector.matchLabels",
        "valid label keys and values",
    ),
    Case(
        "rollout-selector-expression-key-invalid",
        R,
        _set("spec.selector", {"matchExpressions": [{"key": "-site", "operator": "Exists"}]}),
        "spec.selector.matchExpressions[0].key",
        "valid label key",
    ),
    Case(
        "rollout-selector-expression-value-invalid",
        R,
        _set(
            "spec.selector",
            {"matchExpressions": [{"key": "site", "operator": "In", "values": ["a b"]}]},
        ),
        "spec.selector.matchExpressions[0].values",
        "label value",
    ),
    Case(
        "rollout-label-prefix-too-long",
        R,
        _set("spec.selector", {"matchLabels": {("a" * 254) + "/site": "berlin"}}),
        "spec.selector.matchLabels",
        "valid label keys and values",
    ),
    Case(
        "rollout-max-unavailable-zero",
        R,
        _set("spec.maxUnavailable", "0"),
        "spec.maxUnavailable",
        "no device could ever update",
    ),
    Case(
        "rollout-max-unavailable-zero-percent",
        R,
        _set("spec.maxUnavailable", "0%"),
        "spec.maxUnavailable",
        "no device could ever update",
    ),
    Case(
        "rollout-deadline-shorter-than-health-gate",
        R,
        _set("spec.progressDeadline", "30s"),
        "spec.progressDeadline",
        "longer than healthGate.minHealthyDuration",
    ),
    Case(
        "rollout-version-not-a-model-version",
        R,
        _set("spec.model.version", "1.0 beta"),
        "spec.model.version",
        "spec.model.version",
    ),
    Case(
        "rollout-unknown-field-in-step",
        R,
        _set(f"{_STEPS}.0", {"setWeight": 10, "weight": 10}),
        "weight",
    ),
    Case(
        "model-optimizations-share-a-platform",
        M,
        _set(
            "spec.optimizations",
            [
                {"platforms": ["linux/amd64"], "quantization": "Int8Dynamic"},
                {"platforms": ["linux/arm64", "linux/amd64"]},
            ],
        ),
        "spec.optimizations",
        "a platform may appear in only one optimization",
    ),
    Case(
        "model-optimizations-identical-twice",
        M,
        _set("spec.optimizations", [{"platforms": ["linux/amd64"]}] * 2),
        "spec.optimizations",
        "a platform may appear in only one optimization",
    ),
    Case(
        "model-name-with-dot",
        M,
        _set("metadata.name", "defect.detector"),
        "must be a DNS label",
        "must be a DNS label",
    ),
    Case(
        "model-name-too-long-for-a-device",
        M,
        _set("metadata.name", "m" * 64),
        "must be a DNS label",
        "must be a DNS label",
    ),
    Case(
        "model-host-device-escapes-dev",
        M,
        _set("spec.hostDevices", ["/dev/../etc/shadow"]),
        "spec.hostDevices",
        "without '..'",
    ),
    Case(
        "rollout-model-name-with-dot",
        R,
        _set("spec.model.name", "defect.detector"),
        "spec.model.name",
        "spec.model.name",
    ),
    Case(
        "rollout-min-failed-devices-zero",
        R,
        _set("spec.minFailedDevices", 0),
        "spec.minFailedDevices",
    ),
)
