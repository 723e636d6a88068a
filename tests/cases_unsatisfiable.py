"""Invalid objects the API accepted before though no controller could ever satisfy them
(whole-object rules across fields); part of tests/cases.py."""

from __future__ import annotations

from tests.case_builders import Case, M, R, set_at

__all__ = ["UNSATISFIABLE_CASES"]

_STEPS = "spec.canary.steps"

UNSATISFIABLE_CASES: tuple[Case, ...] = (
    Case(
        "model-probe-values-do-not-fill-shape",
        M,
        set_at("spec.probe.values", [0.1, 0.2, 0.3]),
        "spec.probe.values",
        "values must fill shape",
    ),
    Case(
        "model-probe-shape-larger-than-values",
        M,
        set_at("spec.probe.shape", [2, 4]),
        "spec.probe.values",
        "values must fill shape",
    ),
    Case(
        "model-optimization-for-untargeted-platform",
        M,
        set_at("spec.platforms", ["linux/arm64"]),
        "spec.optimizations",
        "must be one of spec.platforms",
    ),
    Case(
        "model-host-devices-repeat",
        M,
        set_at("spec.hostDevices", ["/dev/video0", "/dev/video0"]),
        "spec.hostDevices",
        "hostDevices must not repeat",
    ),
    Case(
        "rollout-selector-label-key-invalid",
        R,
        set_at("spec.selector", {"matchLabels": {"site name": "berlin"}}),
        "spec.selector.matchLabels",
        "valid label keys and values",
    ),
    Case(
        "rollout-selector-label-value-invalid",
        R,
        set_at("spec.selector", {"matchLabels": {"edgefleet.io/site": "berlin/mitte"}}),
        "spec.selector.matchLabels",
        "valid label keys and values",
    ),
    Case(
        "rollout-selector-expression-key-invalid",
        R,
        set_at("spec.selector", {"matchExpressions": [{"key": "-site", "operator": "Exists"}]}),
        "spec.selector.matchExpressions[0].key",
        "valid label key",
    ),
    Case(
        "rollout-selector-expression-value-invalid",
        R,
        set_at(
            "spec.selector",
            {"matchExpressions": [{"key": "site", "operator": "In", "values": ["a b"]}]},
        ),
        "spec.selector.matchExpressions[0].values",
        "label value",
    ),
    Case(
        "rollout-label-prefix-too-long",
        R,
        set_at("spec.selector", {"matchLabels": {("a" * 254) + "/site": "berlin"}}),
        "spec.selector.matchLabels",
        "valid label keys and values",
    ),
    Case(
        "rollout-max-unavailable-zero",
        R,
        set_at("spec.maxUnavailable", "0"),
        "spec.maxUnavailable",
        "no device could ever update",
    ),
    Case(
        "rollout-max-unavailable-zero-percent",
        R,
        set_at("spec.maxUnavailable", "0%"),
        "spec.maxUnavailable",
        "no device could ever update",
    ),
    Case(
        "rollout-deadline-shorter-than-health-gate",
        R,
        set_at("spec.progressDeadline", "30s"),
        "spec.progressDeadline",
        "longer than healthGate.minHealthyDuration",
    ),
    Case(
        "rollout-version-not-a-model-version",
        R,
        set_at("spec.model.version", "1.0 beta"),
        "spec.model.version",
        "spec.model.version",
    ),
    Case(
        "rollout-unknown-field-in-step",
        R,
        set_at(f"{_STEPS}.0", {"setWeight": 10, "weight": 10}),
        "weight",
    ),
    Case(
        "model-optimizations-share-a-platform",
        M,
        set_at(
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
        set_at("spec.optimizations", [{"platforms": ["linux/amd64"]}] * 2),
        "spec.optimizations",
        "a platform may appear in only one optimization",
    ),
    Case(
        "model-name-with-dot",
        M,
        set_at("metadata.name", "defect.detector"),
        "must be a DNS label",
        "must be a DNS label",
    ),
    Case(
        "model-name-too-long-for-a-device",
        M,
        set_at("metadata.name", "m" * 64),
        "must be a DNS label",
        "must be a DNS label",
    ),
    Case(
        "model-host-device-escapes-dev",
        M,
        set_at("spec.hostDevices", ["/dev/../etc/shadow"]),
        "spec.hostDevices",
        "without '..'",
    ),
    Case(
        "rollout-model-name-with-dot",
        R,
        set_at("spec.model.name", "defect.detector"),
        "spec.model.name",
        "spec.model.name",
    ),
    Case(
        "rollout-min-failed-devices-zero",
        R,
        set_at("spec.minFailedDevices", 0),
        "spec.minFailedDevices",
    ),
)
