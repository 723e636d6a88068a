"""Invalid objects that break one field rule (type, enum, pattern, bounds, required,
unknown field) of an EdgeDevice, InferenceModel or Rollout; part of tests/cases.py."""

from __future__ import annotations

from tests.case_builders import Case, D, M, R, delete_at, set_at

__all__ = ["FIELD_RULE_CASES"]

_STEPS = "spec.canary.steps"

FIELD_RULE_CASES: tuple[Case, ...] = (
    Case(
        "device-platform-unknown-arch", D, set_at("spec.platform", "linux/riscv64"), "spec.platform"
    ),
    Case("device-platform-without-os", D, set_at("spec.platform", "arm64"), "spec.platform"),
    Case(
        "device-accelerator-unknown", D, set_at("spec.accelerator", "Quantum"), "spec.accelerator"
    ),
    Case("device-suspended-wrong-type", D, set_at("spec.suspended", "yes"), "spec.suspended"),
    Case("device-name-too-long", D, set_at("metadata.name", "d" * 64), "at most 63 characters"),
    Case(
        "device-label-value-too-long",
        D,
        set_at("metadata.labels", {"edgefleet.io/site": "x" * 64}),
        "metadata.labels",
    ),
    Case("device-config-key-invalid", D, set_at("spec.config", {"bad-key": "1"}), "spec.config"),
    Case("device-unknown-field", D, set_at("spec.replicas", 3), "spec.replicas"),
    Case("model-format-unknown", M, set_at("spec.format", "tflite"), "spec.format"),
    Case(
        "model-url-without-sha256", M, delete_at("spec.source.url.sha256"), "spec.source.url.sha256"
    ),
    Case(
        "model-sha256-not-hex",
        M,
        set_at("spec.source.url.sha256", "abc123"),
        "spec.source.url.sha256",
    ),
    Case(
        "model-source-both",
        M,
        set_at(
            "spec.source.oci", {"reference": "registry.example.com/models/x@sha256:" + "a" * 64}
        ),
        "exactly one of url or oci",
    ),
    Case("model-source-neither", M, set_at("spec.source", {}), "exactly one of url or oci"),
    Case(
        "model-oci-by-tag",
        M,
        set_at("spec.source", {"oci": {"reference": "registry.example.com/models/x:latest"}}),
        "spec.source.oci.reference",
    ),
    Case("model-platforms-empty", M, set_at("spec.platforms", []), "spec.platforms"),
    Case(
        "model-platforms-duplicate",
        M,
        set_at("spec.platforms", ["linux/amd64", "linux/amd64"]),
        "spec.platforms",
    ),
    Case(
        "model-platform-unknown", M, set_at("spec.platforms", ["windows/amd64"]), "spec.platforms"
    ),
    Case("model-version-with-space", M, set_at("spec.version", "1.0 beta"), "spec.version"),
    Case(
        "model-probe-negative-tolerance",
        M,
        set_at("spec.probe.tolerance", -0.5),
        "spec.probe.tolerance",
    ),
    Case(
        "model-url-not-http",
        M,
        set_at("spec.source.url.url", "ftp://models.example.com/m.onnx"),
        "spec.source.url.url",
    ),
    Case("rollout-weight-zero", R, set_at(f"{_STEPS}.0", {"setWeight": 0}), "setWeight"),
    Case("rollout-weight-over-100", R, set_at(f"{_STEPS}.4", {"setWeight": 101}), "setWeight"),
    Case(
        "rollout-weights-decreasing",
        R,
        set_at(_STEPS, [{"setWeight": 50}, {"setWeight": 25}]),
        "strictly increasing",
    ),
    Case(
        "rollout-weights-equal",
        R,
        set_at(_STEPS, [{"setWeight": 50}, {"setWeight": 50}]),
        "strictly increasing",
    ),
    Case(
        "rollout-weight-wrong-type", R, set_at(f"{_STEPS}.0", {"setWeight": "fifty"}), "setWeight"
    ),
    Case(
        "rollout-step-both",
        R,
        set_at(f"{_STEPS}.0", {"setWeight": 10, "pause": {}}),
        "exactly one of setWeight or pause",
    ),
    Case("rollout-step-empty", R, set_at(f"{_STEPS}.0", {}), "exactly one of setWeight or pause"),
    Case("rollout-steps-empty", R, set_at(_STEPS, []), "spec.canary.steps"),
    Case("rollout-selector-missing", R, delete_at("spec.selector"), "spec.selector"),
    Case("rollout-selector-empty", R, set_at("spec.selector", {}), "at least one matchLabels"),
    Case(
        "rollout-selector-empty-labels",
        R,
        set_at("spec.selector", {"matchLabels": {}}),
        "at least one matchLabels",
    ),
    Case(
        "rollout-selector-in-without-values",
        R,
        set_at(
            "spec.selector", {"matchExpressions": [{"key": "edgefleet.io/site", "operator": "In"}]}
        ),
        "values must be non-empty",
    ),
    Case(
        "rollout-pause-negative",
        R,
        set_at(f"{_STEPS}.1", {"pause": {"duration": "-5m"}}),
        "duration",
    ),
    Case(
        "rollout-deadline-negative",
        R,
        set_at("spec.progressDeadline", "-1h"),
        "spec.progressDeadline",
    ),
    Case(
        "rollout-deadline-no-unit",
        R,
        set_at("spec.progressDeadline", "15"),
        "spec.progressDeadline",
    ),
    Case(
        "rollout-max-unavailable-over-100",
        R,
        set_at("spec.maxUnavailable", "150%"),
        "spec.maxUnavailable",
    ),
    Case("rollout-priority-negative", R, set_at("spec.priority", -1), "spec.priority"),
    Case("rollout-model-missing", R, delete_at("spec.model"), "spec.model"),
)
