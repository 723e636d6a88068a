"""The plugin's rendering (pure) and its argument handling, without an API server."""

from __future__ import annotations

import pytest

from edgefleet.kubectl_plugin import main as plugin
from edgefleet.kubectl_plugin.render import bar, device_rows, rollout_lines, summary_line, table

ROLLOUT = {
    "metadata": {"name": "canary", "namespace": "ns"},
    "spec": {"model": {"name": "det", "version": "2.0.0"}},
    "status": {
        "phase": "Paused",
        "currentStep": 1,
        "stableVersion": "1.0.0",
        "message": "step 1: waiting for promotion",
        "counts": {"selected": 200, "updated": 20, "healthy": 19, "failed": 1, "pending": 180},
        "waves": [
            {"step": 0, "weight": 10, "devices": 20, "updated": 20, "healthy": 19, "failed": 1},
            {"step": 2, "weight": 100, "devices": 200},
        ],
        "conditions": [{"type": "Ready", "status": "False", "reason": "WaitingForPromotion"}],
        "failedDevices": [{"name": "d7", "reason": "ProbeFailed", "message": "bad"}],
    },
}


@pytest.mark.parametrize(
    ("done", "total", "text"),
    [
        (0, 10, "[..........]"),
        (5, 10, "[#####.....]"),
        (10, 10, "[##########]"),
        (3, 0, "[..........]"),
    ],
)
def test_bar(done, total, text):
    assert bar(done, total, width=10) == text


def test_rollout_lines_show_waves_counts_and_the_reason():
    lines = rollout_lines(ROLLOUT)
    assert "det 1.0.0 -> 2.0.0" in lines[0]
    assert "phase Paused" in lines[0]
    assert "updated 20" in lines[1]
    wave = next(line for line in lines if "step  0" in line)
    assert wave.startswith(" >")  # step 1 is a pause after wave 0: wave 0 is marked
    assert "19/20" in wave
    assert any("WaitingForPromotion" in line for line in lines)
    assert any("d7 ProbeFailed" in line for line in lines)


def test_summary_line_is_one_line():
    line = summary_line(ROLLOUT)
    assert "\n" not in line
    assert "20/200 updated" in line
    assert "waiting for promotion" in line


def test_device_table_aligns_columns():
    items = [
        {
            "metadata": {"name": "a"},
            "spec": {"platform": "linux/amd64"},
            "status": {
                "desiredVersion": "det=2.0.0",
                "conditions": [{"type": "Online", "status": "True"}],
            },
        },
        {"metadata": {"name": "longer-name"}, "spec": {"platform": "linux/arm64"}},
    ]
    lines = table(device_rows(items))
    assert lines[0].split() == [
        "NAME",
        "PLATFORM",
        "ONLINE",
        "READY",
        "DESIRED",
        "CURRENT",
        "LAST",
        "SEEN",
    ]
    assert lines[1].index("linux/amd64") == lines[2].index("linux/arm64")
    assert "det=2.0.0" in lines[1]


def test_unknown_verb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        plugin.main(["rollout", "explode", "x"])
    assert exc.value.code == 2


def test_gitops_owner_is_named():
    obj = {
        "metadata": {
            "managedFields": [
                {
                    "manager": "kustomize-controller",
                    "operation": "Apply",
                    "fieldsV1": {"f:spec": {"f:paused": {}}},
                },
                {
                    "manager": "edgefleet-cli",
                    "operation": "Update",
                    "fieldsV1": {"f:spec": {"f:abort": {}}},
                },
            ]
        }
    }
    assert plugin._gitops_owner(obj, "paused") == "kustomize-controller"
    assert plugin._gitops_owner(obj, "abort") is None
