"""The rollout planner's conditions and events on a small in-memory fleet: overlapping
rollouts decided by priority (a tie is a condition), a missing model or unbuilt
platform, and a paused spec."""

from __future__ import annotations

from tests.unit.rollout_world import (
    model,
    rollout,
    small_fleet,
)


def test_priority_decides_overlaps_and_a_tie_is_a_condition():
    f = small_fleet(n=6)
    high = rollout("high", priority=5)
    f.rivals = [high]
    f.step(0)
    assert f.ro.status.counts.lost == 6
    assert f.ro.status.lost_devices[0].reason == "LostToHigherPriority"
    assert "high" in f.ro.status.lost_devices[0].message
    f.rivals = [rollout("twin")]
    d = f.step(1)
    assert d.writes == []
    assert f.cond("DevicesSkipped").reason == "PriorityTie"
    assert any(e.reason == "PriorityTie" for e in d.events)


def test_missing_model_and_unbuilt_platform_are_conditions():
    f = small_fleet(n=4)
    f.model = None
    f.step(0)
    assert f.cond("Progressing").reason == "ModelNotFound"
    assert f.cond("Reconciling").status == "True"
    f.model = model("9.9.9")
    f.step(1)
    assert f.cond("Progressing").reason == "VersionNotFound"
    f.step(16 * 60)
    assert f.cond("Stalled").status == "True"
    assert f.ro.status.phase == "Failed"
    f.model = model(platforms=("linux/amd64",))
    f.step(16 * 60 + 1)
    assert f.cond("DevicesSkipped").reason == "PlatformNotBuilt"
    assert f.ro.status.counts.skipped == 1
    assert f.ro.status.counts.selected == 3


def test_paused_spec_assigns_nothing_and_pause_and_resume_are_events():
    f = small_fleet(n=4, paused=True)
    d = f.step(0)
    assert d.writes == []
    assert f.ro.status.phase == "Paused"
    assert [e.reason for e in d.events if e.reason == "Paused"] == ["Paused"]
    assert not [e for e in f.step(1).events if e.reason == "Paused"]  # once, not per pass
    f.ro.spec.paused = False
    d = f.step(2)
    assert len(d.writes) == 4
    assert any(e.message.startswith("resumed") for e in d.events)
