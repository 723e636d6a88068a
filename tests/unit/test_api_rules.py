"""Rules that refuse what can never work: pydantic names the rule, like the API server."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgefleet.api import KIND_MODELS
from edgefleet.api.meta import LabelSelector
from edgefleet.api.rollout import RolloutSpec
from tests.cases import CASES, Case, example

NEW_RULES = [c for c in CASES if c.model_mentions is not None]


def test_the_new_rules_have_cases():
    assert len(NEW_RULES) >= 10


@pytest.mark.parametrize("case", NEW_RULES, ids=lambda c: c.id)
def test_pydantic_names_the_rule(case: Case):
    with pytest.raises(ValidationError) as err:
        KIND_MODELS[case.kind].model_validate(case.build())
    assert case.model_mentions in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "labels",
    [{"edgefleet.io/site": "berlin"}, {"site": ""}, {"a.b/c_d-e.f": "x.y_z-1"}],
)
def test_valid_selectors_stay_valid(labels):
    assert LabelSelector.model_validate({"matchLabels": labels}).match_labels == labels


@pytest.mark.parametrize(
    ("gate", "deadline", "ok"),
    [("1m", "15m", True), ("15m", "15m", False), ("0.25h", "15m", False), ("900s", "901s", True)],
)
def test_deadline_against_health_gate_is_exact(gate, deadline, ok):
    spec = example("Rollout")["spec"] | {
        "progressDeadline": deadline,
        "healthGate": {"minHealthyDuration": gate},
    }
    if ok:
        RolloutSpec.model_validate(spec)
    else:
        with pytest.raises(ValidationError):
            RolloutSpec.model_validate(spec)


def test_a_newline_after_a_label_value_is_refused():
    with pytest.raises(ValidationError):
        LabelSelector.model_validate({"matchLabels": {"site": "berlin\n"}})


def test_a_desired_workload_probe_follows_the_model_probe_rules():
    """EdgeDevice status and Rollout status hold the InferenceModel's own probe type."""
    from edgefleet.api.edgedevice import DesiredWorkload

    workload = {
        "model": "det", "version": "1.0.0", "repository": "edgefleet/models/ns/det",
        "indexDigest": "sha256:" + "a" * 64, "imageDigest": "sha256:" + "b" * 64,
        "probe": {"inputName": "x", "shape": [1, 4], "values": [0.0] * 4,
                  "outputName": "y", "expected": [1.0]},
    }  # fmt: skip
    assert DesiredWorkload.model_validate(workload).probe is not None
    workload["probe"]["values"] = [0.0] * 3
    with pytest.raises(ValidationError, match="values must fill shape"):
        DesiredWorkload.model_validate(workload)
