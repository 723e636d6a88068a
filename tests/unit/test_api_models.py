"""The pydantic models accept every example and reject every invalid case."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgefleet.api import KIND_MODELS
from edgefleet.api.meta import parse_duration
from tests.cases import CASES, Case, example_objects


@pytest.mark.parametrize(
    "obj",
    [o for o in example_objects() if o["kind"] in KIND_MODELS],
    ids=lambda o: f"{o['kind']}/{o['metadata']['name']}",
)
def test_examples_are_valid(obj):
    parsed = KIND_MODELS[obj["kind"]].model_validate(obj)
    # Round trip: what we would send is what the user wrote, plus defaults.
    wire = parsed.wire()
    assert wire["metadata"]["name"] == obj["metadata"]["name"]
    for key, value in obj["spec"].items():
        assert wire["spec"][key] == value


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_objects_are_rejected(case: Case):
    with pytest.raises(ValidationError):
        KIND_MODELS[case.kind].model_validate(case.build())


def test_there_are_at_least_twenty_cases():
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("1h30m", 5400), ("250ms", 0.25), ("1.5m", 90)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["-5m", "5", "5d", "", "m"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
