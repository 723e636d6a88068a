"""The rollout planner when things go wrong, on a small in-memory fleet: a failing wave
aborts and rolls back, rollback restores each device's previous workload, the latency
gate, retry after abort or stall, and a completed rollout that never aborts by itself."""

from __future__ import annotations

from tests.unit.rollout_world import (
    CANARY,
    assigned,
    model,
    rollout,
    small_fleet,
    ts,
)


def test_first_wave_fails_its_probe_aborts_and_rolls_back_only_the_wave():
    f = small_fleet(**CANARY)
    f.step(0)
    wave = assigned(f)
    for name in wave:
        f.report(name, "Unhealthy")
    d = f.step(1)
    assert f.ro.status.phase == "Aborted"
    assert f.cond("Aborted").reason == "FailureThresholdExceeded"
    assert f.cond("Stalled").status == "True"
    assert f.cond("Reconciling").status == "False"
    assert {w.name for w in d.writes} == wave
    assert all(w.kind == "rollback" for w in d.writes)
    assert assigned(f) == set()
    assert {n.name for n in f.ro.status.failed_devices} == wave
    assert {e.reason for e in d.events} >= {"FailureThresholdExceeded", "RolledBack"}
    d = f.step(2)
    assert d.writes == [], "a rollback is written once"
    assert max(f.writes.values()) == 2


def test_rollback_restores_what_each_device_ran_before():
    f = small_fleet(n=4)
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
    assert len(assigned(f)) == 4
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


def test_latency_gate_fails_a_device():
    f = small_fleet(
        n=10, healthGate={"minHealthyDuration": "1s", "maxP95LatencyMs": 50}, failureThreshold="1"
    )
    f.step(0)
    name = sorted(assigned(f))[0]
    f.report(name, p95=80.0)
    f.step(1)
    assert f.ro.status.phase == "Aborted"
    assert f.ro.status.failed_devices[0].reason == "LatencyAboveLimit"


def test_retry_starts_again():
    f = small_fleet(n=4)
    f.step(0)
    f.report_all("Unhealthy")
    f.step(1)
    assert f.ro.status.phase == "Aborted"
    f.ro.metadata.annotations["edgefleet.io/retry"] = ts(2)
    d = f.step(2)
    assert f.ro.status.phase == "Progressing"
    assert len(d.writes) == 4
    assert f.cond("Aborted").status == "False"


def test_a_stalled_rollout_recovers_by_retry_and_a_running_one_only_records_it():
    f = small_fleet(n=4, progressDeadline="30s")
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


def test_a_completed_rollout_never_aborts_by_itself():
    f = small_fleet(n=4)
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
