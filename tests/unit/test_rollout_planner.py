"""The rollout planner as tables: selection, order, steps, budgets, gates, abort and
rollback, overlap, late joiners, restarts — pure, with a small in-memory fleet."""

from __future__ import annotations

import pytest

from edgefleet.api.meta import LabelSelector
from edgefleet.domain.rollout import plan, selection
from tests.unit.rollout_world import AMD, ARM, Fleet, device, model, rollout, ts


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


def _fleet(n=20, **spec) -> Fleet:
    devices = [
        device(f"d{i:02d}", platform="linux/arm64" if i % 4 == 0 else "linux/amd64")
        for i in range(n)
    ]
    return Fleet(devices, rollout(**spec), model())


def _assigned(f: Fleet) -> set[str]:
    return {n for n in f.devices if (w := f.desired(n)) is not None and w.version == "2.0.0"}


CANARY = {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]}}


def test_three_step_canary_runs_to_completion_with_counts():
    f = _fleet(**CANARY)
    d = f.step(0)
    assert f.ro.status.phase == "Progressing"
    assert f.ro.status.target.repository == "edgefleet/models/ns/det"
    assert len(d.writes) == 2 == f.ro.status.counts.updated
    assert f.ro.status.counts.selected == 20
    assert f.ro.status.counts.pending == 18
    # Desired entries: per-platform digest, model config under the rollout's.
    for name in _assigned(f):
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
    assert len(_assigned(f)) == 10
    assert [w.devices for w in f.ro.status.waves] == [2, 10, 20]
    f.report_all()
    f.step(14)
    f.step(25)
    assert f.ro.status.current_step == 3
    assert len(_assigned(f)) == 20
    f.report_all()
    f.step(26)
    f.step(40)
    assert f.ro.status.phase == "Completed"
    assert f.cond("Ready").status == "True"
    assert f.cond("Reconciling").status == "False"
    assert f.ro.status.counts.healthy == 20
    assert set(f.writes.values()) == {1}, "every device written exactly once"


def test_max_unavailable_limits_devices_updating_at_once():
    f = _fleet(maxUnavailable="3")
    d = f.step(0)
    assert len(d.writes) == 3
    d = f.step(1)
    assert d.writes == []  # the three are still updating
    f.report_all()
    d = f.step(2)
    assert len(d.writes) == 3


def test_first_wave_fails_its_probe_aborts_and_rolls_back_only_the_wave():
    f = _fleet(**CANARY)
    f.step(0)
    wave = _assigned(f)
    for name in wave:
        f.report(name, "Unhealthy")
    d = f.step(1)
    assert f.ro.status.phase == "Aborted"
    assert f.cond("Aborted").reason == "FailureThresholdExceeded"
    assert f.cond("Stalled").status == "True"
    assert f.cond("Reconciling").status == "False"
    assert {w.name for w in d.writes} == wave
    assert all(w.kind == "rollback" for w in d.writes)
    assert _assigned(f) == set()
    assert {n.name for n in f.ro.status.failed_devices} == wave
    assert {e.reason for e in d.events} >= {"FailureThresholdExceeded", "RolledBack"}
    d = f.step(2)
    assert d.writes == [], "a rollback is written once"
    assert max(f.writes.values()) == 2


def test_rollback_restores_what_each_device_ran_before():
    f = _fleet(n=4)
    old = rollout("old", model={"name": "det", "version": "1.0.0"})
    f.ro = old
    f.model = model("1.0.0")
    f.step(0)
    f.report_all()
    f.step(1)
    f.step(20)
    assert f.ro.status.phase == "Completed"
    f.rivals = [f.ro]
    f.ro, f.model = rollout("new"), model("2.0.0")
    f.step(21)
    assert len(_assigned(f)) == 4
    assert f.ro.status.stable_version == "1.0.0"
    # The finished rollout loses every device to the newer one and stays Completed,
    # so the newer one keeps winning (no tie).
    finished, new = f.rivals[0], f.ro
    f.ro, f.rivals, f.model = finished, [new], model("1.0.0")
    d = f.step(21.5)
    assert d.writes == []
    assert f.ro.status.phase == "Completed"
    assert f.cond("Ready").status == "True"
    assert f.ro.status.counts.lost == 4
    f.ro, f.rivals, f.model = new, [f.ro], model("2.0.0")
    assert f.step(21.7).writes == []
    assert f.cond("DevicesSkipped").status == "False"
    f.ro.spec.abort = True
    d = f.step(22)
    assert len(d.writes) == 4
    assert {f.desired(n).version for n in f.devices} == {"1.0.0"}
    assert {f.desired(n).rollout for n in f.devices} == {"old"}
    assert f.cond("Aborted").reason == "Aborted"


def test_offline_devices_never_fail_and_never_block():
    f = _fleet(n=10, canary={"steps": [{"setWeight": 50}]})
    f.step(0)
    wave = sorted(_assigned(f))
    f.set_online(wave[0], False)
    for name in wave[1:]:
        f.report(name)
    f.step(1)
    f.step(12)
    assert f.ro.status.current_step == 1
    assert f.ro.status.counts.offline == 1
    assert f.ro.status.counts.failed == 0


def test_priority_decides_overlaps_and_a_tie_is_a_condition():
    f = _fleet(n=6)
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
    f = _fleet(n=4)
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


def test_late_joiner_gets_the_rolled_out_version():
    f = _fleet(n=3)
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
    f = _fleet(**CANARY)
    f.step(0)
    snapshot = dict(f.writes)
    f.ro = f.ro.model_copy(update={"status": None})  # status write lost (killed mid-pass)
    d = f.step(0.5)
    assert d.writes == []
    assert f.writes == snapshot


def test_latency_gate_fails_a_device():
    f = _fleet(
        n=10, healthGate={"minHealthyDuration": "1s", "maxP95LatencyMs": 50}, failureThreshold="1"
    )
    f.step(0)
    name = sorted(_assigned(f))[0]
    f.report(name, p95=80.0)
    f.step(1)
    assert f.ro.status.phase == "Aborted"
    assert f.ro.status.failed_devices[0].reason == "LatencyAboveLimit"


def test_retry_starts_again():
    f = _fleet(n=4)
    f.step(0)
    f.report_all("Unhealthy")
    f.step(1)
    assert f.ro.status.phase == "Aborted"
    f.ro.metadata.annotations["edgefleet.io/retry"] = ts(2)
    d = f.step(2)
    assert f.ro.status.phase == "Progressing"
    assert len(d.writes) == 4
    assert f.cond("Aborted").status == "False"


def test_paused_spec_assigns_nothing_and_pause_and_resume_are_events():
    f = _fleet(n=4, paused=True)
    d = f.step(0)
    assert d.writes == []
    assert f.ro.status.phase == "Paused"
    assert [e.reason for e in d.events if e.reason == "Paused"] == ["Paused"]
    assert not [e for e in f.step(1).events if e.reason == "Paused"]  # once, not per pass
    f.ro.spec.paused = False
    d = f.step(2)
    assert len(d.writes) == 4
    assert any(e.message.startswith("resumed") for e in d.events)


def test_a_stalled_rollout_recovers_by_retry_and_a_running_one_only_records_it():
    f = _fleet(n=4, progressDeadline="30s")
    f.step(0)  # assigned; devices never report
    f.step(40)
    assert f.ro.status.phase == "Failed"
    assert f.cond("Stalled").reason == "ProgressDeadlineExceeded"
    f.ro.metadata.annotations["edgefleet.io/retry"] = "one"
    f.step(41)
    assert f.ro.status.phase == "Progressing"
    assert f.cond("Stalled").status == "False"
    f.ro.metadata.annotations["edgefleet.io/retry"] = "two"
    f.step(42)
    assert f.ro.status.retry_token == "two"
    assert f.ro.status.started_at == ts(41)


def test_a_large_wave_is_written_in_bounded_passes():
    f = _fleet(n=20)
    f.ro.spec.max_unavailable = "100%"
    from edgefleet.domain.rollout import World, decide
    from tests.unit.rollout_world import T0

    d = decide(World(f.ro, f.model, list(f.devices.values()), [], T0, max_writes=7))
    assert len(d.writes) == 7
    assert d.status.counts.updated == 7


def test_a_completed_rollout_never_aborts_by_itself():
    f = _fleet(n=4)
    f.step(0)
    f.report_all()
    f.step(1)
    f.step(20)
    assert f.ro.status.phase == "Completed"
    f.report_all("Unhealthy")
    d = f.step(21)
    assert d.writes == []
    assert f.ro.status.phase == "Completed"
    assert f.ro.status.counts.failed == 4


def test_the_health_gate_holds_at_least_its_duration_though_status_keeps_whole_seconds():
    f = _fleet(healthGate={"minHealthyDuration": "1s"})
    f.step(0)
    f.report_all()
    f.step(10.5)  # the wave is first seen healthy half-way through a second
    f.step(11.2)  # 0.7 s later: rounded down, the start would say 1.2 s had passed
    assert f.ro.status.phase == "Progressing"
    assert f.cond("Progressing").reason == "WaitingForHealth"
    f.step(12.0)  # 1.5 s healthy
    assert f.ro.status.phase == "Completed"
