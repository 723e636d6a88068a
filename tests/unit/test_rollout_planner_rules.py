"""The rollout planner's pure rules as tables: label selection like Kubernetes, a stable
order as devices join, canary steps, wave sizes and failure limits."""

from __future__ import annotations

import pytest

from edgefleet.api.meta import LabelSelector
from edgefleet.domain.rollout import plan, selection
from tests.unit.rollout_world import rollout


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"matchLabels": {"site": "a"}}, {"site": "a"}, True),
        ({"matchLabels": {"site": "a"}}, {"site": "b"}, False),
        ({"matchLabels": {"site": "a", "line": "1"}}, {"site": "a"}, False),
        (
            {"matchExpressions": [{"key": "site", "operator": "In", "values": ["a", "b"]}]},
            {"site": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "site", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "site", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "site", "operator": "NotIn", "values": ["a"]}]},
            {"site": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, {"gpu": ""}, True),
        ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, {"gpu": "x"}, False),
        (
            {
                "matchLabels": {"site": "a"},
                "matchExpressions": [{"key": "gpu", "operator": "Exists"}],
            },
            {"site": "a"},
            False,
        ),
    ],
)
def test_selector_matches_like_kubernetes(selector, labels, expected):
    assert selection.matches(LabelSelector.model_validate(selector), labels) is expected


def test_order_is_stable_when_devices_join():
    names = [f"d{i}" for i in range(50)]
    before = sorted(names, key=lambda n: selection.order_key("uid", n))
    after = sorted([*names, "new1", "new2"], key=lambda n: selection.order_key("uid", n))
    assert [n for n in after if n in names] == before
    other = sorted(names, key=lambda n: selection.order_key("uid-2", n))
    assert other != before  # another rollout starts elsewhere


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (None, [(0, 100, None)]),
        ([{"setWeight": 10}], [(0, 10, None), (1, 100, None)]),
        (
            [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}],
            [(0, 10, None), (1, None, None), (2, 100, None)],
        ),
        (
            [{"pause": {"duration": "1m30s"}}, {"setWeight": 50}],
            [(0, None, 90.0), (1, 50, None), (2, 100, None)],
        ),
    ],
)
def test_steps_end_with_every_device(steps, expected):
    ro = rollout(**({"canary": {"steps": steps}} if steps else {}))
    assert [(s.index, s.weight, s.pause_seconds) for s in plan.steps_of(ro)] == expected


@pytest.mark.parametrize(
    ("weight", "selected", "size"),
    [(10, 200, 20), (10, 5, 1), (1, 1000, 10), (33, 10, 4), (100, 7, 7), (50, 0, 0)],
)
def test_wave_size(weight, selected, size):
    assert plan.wave_size(weight, selected) == size


@pytest.mark.parametrize(
    ("threshold", "minimum", "updated", "limit"),
    [("10%", 1, 20, 2), ("10%", 1, 5, 1), ("10%", 3, 5, 3), ("2", 1, 100, 2), ("50%", 1, 0, 1)],
)
def test_failure_limit(threshold, minimum, updated, limit):
    ro = rollout(failureThreshold=threshold, minFailedDevices=minimum)
    assert plan.failure_limit(ro, updated) == limit
