"""The rollout planner moving forward on a small in-memory fleet: a canary run to
completion with counts, the unavailability budget, offline devices, late joiners, a
replayed pass, bounded write passes and the health gate's duration."""

from __future__ import annotations

from tests.unit.rollout_world import (
    AMD,
    ARM,
    CANARY,
    assigned,
    device,
    small_fleet,
)


def test_three_step_canary_runs_to_completion_with_counts():
    f = small_fleet(**CANARY)
    d = f.step(0)
    assert f.ro.status.phase == "Progressing"
    assert f.ro.status.target.repository == "edgefleet/models/ns/det"
    assert len(d.writes) == 2 == f.ro.status.counts.updated
    assert f.ro.status.counts.selected == 20
    assert f.ro.status.counts.pending == 18
    # Desired entries: per-platform digest, model config under the rollout's.
    for name in assigned(f):
        want = f.desired(name)
        arm = f.devices[name].spec.platform == "linux/arm64"
        assert want.image_digest == (ARM if arm else AMD)
        assert want.config == {"A": "model", "B": "model"}
        assert want.rollout == "r"
    f.report_all()
    f.step(1)
    assert f.ro.status.healthy_since is not None
    assert f.ro.status.current_step == 0
    f.step(12)  # healthy for 11 s > 10 s: step 0 done, pause step waits for promotion
    assert f.ro.status.current_step == 1
    assert f.ro.status.phase == "Paused"
    assert f.cond("Progressing").reason == "WaitingForPromotion"
    assert f.cond("Reconciling").status == "True"
    assert f.cond("Ready").status == "False"
    f.ro.metadata.annotations["edgefleet.io/promote"] = "1"
    d = f.step(13)
    assert f.ro.status.current_step == 2
    assert len(assigned(f)) == 10
    assert [w.devices for w in f.ro.status.waves] == [2, 10, 20]
    f.report_all()
    f.step(14)
    f.step(25)
    assert f.ro.status.current_step == 3
    assert len(assigned(f)) == 20
    f.report_all()
    f.step(26)
    f.step(40)
    assert f.ro.status.phase == "Completed"
    assert f.cond("Ready").status == "True"
    assert f.cond("Reconciling").status == "False"
    assert f.ro.status.counts.healthy == 20
    assert set(f.writes.values()) == {1}, "every device written exactly once"


def test_max_unavailable_limits_devices_updating_at_once():
    f = small_fleet(maxUnavailable="3")
    d = f.step(0)
    assert len(d.writes) == 3
    d = f.step(1)
    assert d.writes == []  # the three are still updating
    f.report_all()
    d = f.step(2)
    assert len(d.writes) == 3


def test_offline_devices_never_fail_and_never_block():
    f = small_fleet(n=10, canary={"steps": [{"setWeight": 50}]})
    f.step(0)
    wave = sorted(assigned(f))
    f.set_online(wave[0], False)
    for name in wave[1:]:
        f.report(name)
    f.step(1)
    f.step(12)
    assert f.ro.status.current_step == 1
    assert f.ro.status.counts.offline == 1
    assert f.ro.status.counts.failed == 0


def test_late_joiner_gets_the_rolled_out_version():
    f = small_fleet(n=3)
    f.step(0)
    f.report_all()
    f.step(1)
    f.step(20)
    assert f.ro.status.phase == "Completed"
    f.devices["late"] = device("late")
    d = f.step(21)
    assert [w.name for w in d.writes] == ["late"]
    assert f.ro.status.phase == "Completed"


def test_a_replayed_pass_writes_nothing_twice():
    f = small_fleet(**CANARY)
    f.step(0)
    snapshot = dict(f.writes)
    f.ro = f.ro.model_copy(update={"status": None})  # status write lost (killed mid-pass)
    d = f.step(0.5)
    assert d.writes == []
    assert f.writes == snapshot


def test_a_large_wave_is_written_in_bounded_passes():
    f = small_fleet(n=20)
    f.ro.spec.max_unavailable = "100%"
    from edgefleet.domain.rollout import World, decide
    from tests.unit.rollout_world import T0

    d = decide(World(f.ro, f.model, list(f.devices.values()), [], T0, max_writes=7))
    assert len(d.writes) == 7
    assert d.status.counts.updated == 7


def test_the_health_gate_holds_at_least_its_duration_though_status_keeps_whole_seconds():
    f = small_fleet(healthGate={"minHealthyDuration": "1s"})
    f.step(0)
    f.report_all()
    f.step(10.5)  # the wave is first seen healthy half-way through a second
    f.step(11.2)  # 0.7 s later: rounded down, the start would say 1.2 s had passed
    assert f.ro.status.phase == "Progressing"
    assert f.cond("Progressing").reason == "WaitingForHealth"
    f.step(12.0)  # 1.5 s healthy
    assert f.ro.status.phase == "Completed"
