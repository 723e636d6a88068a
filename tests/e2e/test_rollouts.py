"""Rollouts end to end: the real API server, the operator as its own process (rollout
controller only), and 200 fake-fleet devices standing in for the gateway and agents
(see edgefleet.testing.fakefleet). Counts and conditions are read from the API server;
assignments are counted by each device's desiredRevision (one per controller write)."""

from __future__ import annotations

import json
import subprocess

import pytest

from edgefleet.testing import kstatus
from edgefleet.testing.procs import wait_until
from tests.e2e import rollout_helpers as h


@pytest.fixture
def env(crds, registry):
    return h.rollout_env(crds, registry)


@pytest.fixture
def api(crds):
    return h.objects(crds)


def test_rollout_is_in_progress_before_any_controller_looks(crds, namespace, api):
    h.apply_rollout(crds, namespace, "early")
    obj = h.get(api, namespace, "rollouts", "early")
    assert obj["status"]["observedGeneration"] == 0
    assert kstatus.compute(obj)[0] == "InProgress"
    # The same for an EdgeDevice no gateway has looked at yet.
    device = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": "fresh", "namespace": namespace},
        "spec": {"platform": "linux/amd64"},
    }
    crds.kubectl("apply", "-f", "-", input_text=json.dumps(device))
    assert kstatus.compute(h.get(api, namespace, "edgedevices", "fresh"))[0] == "InProgress"


def test_three_step_canary_completes_with_counts_and_conditions(
    crds, namespace, api, env, tmp_path
):
    h.put_model(api, namespace, "2.0.0")
    with (
        h.fleet(crds, namespace, 150, 50, delay=0.2) as fleet,
        h.operator_process(env, tmp_path) as op,
    ):
        steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "2s"}}]
        h.apply_rollout(crds, namespace, "canary", canary={"steps": steps})
        obj = h.wait_rollout(
            api,
            namespace,
            "canary",
            lambda o: (o.get("status") or {}).get("phase") == "Paused",
            "paused at step 1",
            op,
        )
        st = obj["status"]
        assert st["currentStep"] == 1
        assert st["counts"] == {
            "selected": 200,
            "updated": 20,
            "healthy": 20,
            "failed": 0,
            "pending": 180,
            "offline": 0,
            "lost": 0,
            "skipped": 0,
        }
        assert st["waves"][0] == {
            "step": 0,
            "weight": 10,
            "devices": 20,
            "updated": 20,
            "healthy": 20,
            "failed": 0,
            "offline": 0,
        }
        assert h.cond(obj, "Progressing")["reason"] == "WaitingForPromotion"
        assert h.cond(obj, "Ready")["status"] == "False"
        assert kstatus.compute(obj)[0] == "InProgress"
        assert h.cond(obj, "Ready")["observedGeneration"] == obj["metadata"]["generation"]
        assert sum(h.desired_version(d) == "2.0.0" for d in h.devices(api, namespace)) == 20
        shown = h.plugin(crds, namespace, "rollout", "status", "canary")
        assert "WaitingForPromotion" in shown
        assert "20/20" in shown
        h.plugin(crds, namespace, "rollout", "promote", "canary")
        obj = h.wait_rollout(
            api,
            namespace,
            "canary",
            lambda o: h.cond(o, "Ready").get("status") == "True",
            "Ready",
            op,
        )
        st = obj["status"]
        assert st["phase"] == "Completed"
        assert st["counts"]["healthy"] == 200
        assert [w["devices"] for w in st["waves"]] == [20, 100, 200]
        assert kstatus.compute(obj)[0] == "Current"
        done = crds.kubectl(
            "wait",
            "--for=condition=Ready",
            "rollouts.edgefleet.io/canary",
            "-n",
            namespace,
            "--timeout=30s",
            check=False,
        )
        assert done.returncode == 0, done.stderr
        devs = h.devices(api, namespace)
        assert {d["status"]["desiredRevision"] for d in devs} == {1}, "one write per device"
        for d in devs:
            (want,) = d["status"]["desired"]
            assert want["imageDigest"] == h.digest("det", "2.0.0", d["spec"]["platform"])
            assert want["repository"] == f"edgefleet/models/{namespace}/det"
            assert want["config"] == {"THRESHOLD": "0.5"}
            managers = {m["manager"] for m in d["metadata"]["managedFields"]}
            assert {"edgefleet-rollouts", "edgefleet-gateway"} <= managers
        followed = h.plugin(crds, namespace, "rollout", "status", "canary", "--watch")
        assert followed.count("\n") == 1  # not a TTY: one plain line per change
        assert "Completed: 200/200 updated, 200 healthy" in followed
        listing = h.plugin(crds, namespace, "device", "list")
        assert len(listing.splitlines()) == 201
        assert "det=2.0.0" in listing.splitlines()[1]
        described = h.plugin(crds, namespace, "device", "describe", "arm-000")
        assert "rollout=canary" in described
        assert "Healthy" in described
        reasons = h.events(crds, namespace, "canary")
        assert {"WaveStarted", "StepCompleted", "Promoted", "Completed"} <= set(reasons)
        row = crds.kubectl("get", "efro", "canary", "-n", namespace).stdout
        assert "Completed" in row
        assert fleet.reports >= 400


def test_kubectl_wait_fails_fast_for_missing_model(crds, namespace, api, env, tmp_path):
    with h.operator_process(env, tmp_path) as op:
        h.apply_rollout(crds, namespace, "nomodel")
        obj = h.wait_rollout(
            api,
            namespace,
            "nomodel",
            lambda o: h.cond(o, "Progressing").get("reason") == "ModelNotFound",
            "condition",
            op,
        )
        assert h.cond(obj, "Reconciling")["status"] == "True"
        assert "det" in h.cond(obj, "Progressing")["message"]
        done = subprocess.run(
            [
                crds.tools.kubectl,
                f"--kubeconfig={crds.kubeconfig}",
                "wait",
                "-n",
                namespace,
                "--for=condition=Ready",
                "rollouts.edgefleet.io/nomodel",
                "--timeout=2s",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode != 0


def _complete_v1(crds, api, namespace, op) -> None:
    """Every device on 1.0.0 through a finished rollout (the stable version)."""
    h.put_model(api, namespace, "1.0.0")
    h.apply_rollout(crds, namespace, "v1", version="1.0.0", maxUnavailable="100%")
    h.wait_rollout(
        api,
        namespace,
        "v1",
        lambda o: (o.get("status") or {}).get("phase") == "Completed",
        "v1 done",
        op,
    )


def test_first_wave_fails_probe_aborts_and_rolls_back_rest_never_get_it(
    crds, namespace, api, env, tmp_path
):
    def outcome(name, workload):
        return "ProbeFailed" if workload["version"] == "2.0.0" else "Healthy"

    with (
        h.fleet(crds, namespace, 150, 50, delay=0.2, outcome=outcome),
        h.operator_process(env, tmp_path) as op,
    ):
        _complete_v1(crds, api, namespace, op)
        h.put_model(api, namespace, "2.0.0")
        h.apply_rollout(crds, namespace, "v2", canary={"steps": [{"setWeight": 10}, {"pause": {}}]})
        obj = h.wait_rollout(
            api,
            namespace,
            "v2",
            lambda o: (o.get("status") or {}).get("phase") == "Aborted",
            "aborted",
            op,
        )
        assert h.cond(obj, "Aborted")["reason"] == "FailureThresholdExceeded"
        assert h.cond(obj, "Stalled")["status"] == "True"
        assert h.cond(obj, "Ready")["status"] == "False"
        assert kstatus.compute(obj)[0] == "Failed"
        assert obj["status"]["failedDevices"][0]["reason"] == "ProbeFailed"
        assert obj["status"]["stableVersion"] == "1.0.0"

        def rolled_back() -> bool:
            return all(h.desired_version(d) == "1.0.0" for d in h.devices(api, namespace))

        wait_until(rolled_back, timeout=60, what="every device back on 1.0.0")
        revisions = sorted(d["status"]["desiredRevision"] for d in h.devices(api, namespace))
        # 20 devices of the first wave: v1, v2, rollback; the other 180 only ever v1.
        assert revisions == [1] * 180 + [3] * 20
        for d in h.devices(api, namespace):
            assert d["status"].get("previous", []) == [] or all(
                p["rollout"] == "v1" for p in d["status"]["previous"]
            )
        reasons = set(h.events(crds, namespace, "v2"))
        assert {"FailureThresholdExceeded", "RolledBack"} <= reasons
        # Retry through the plugin starts it again (and fails again, same verdict).
        h.plugin(crds, namespace, "rollout", "retry", "v2")
        h.wait_rollout(
            api, namespace, "v2", lambda o: o["status"].get("retryToken") is not None, "retried", op
        )


def test_pause_promote_abort_offline_and_late_joiner(crds, namespace, api, env, tmp_path):
    h.put_model(api, namespace, "2.0.0")
    with (
        h.fleet(crds, namespace, 40, 10, delay=0.1) as fleet,
        h.operator_process(env, tmp_path) as op,
    ):
        steps = [{"setWeight": 20}, {"pause": {}}]
        h.apply_rollout(
            crds, namespace, "ctl", paused=True, canary={"steps": steps}, maxUnavailable="100%"
        )
        obj = h.wait_rollout(
            api,
            namespace,
            "ctl",
            lambda o: (o.get("status") or {}).get("phase") == "Paused",
            "paused",
            op,
        )
        assert obj["status"]["counts"]["updated"] == 0
        assert all(h.desired_version(d) is None for d in h.devices(api, namespace))
        # Devices go offline; the plugin resumes; offline ones never fail or block.
        for name in (f"amd-{i:03d}" for i in range(0, 40, 4)):
            fleet.set_online(name, False)
        h.plugin(crds, namespace, "rollout", "resume", "ctl")
        obj = h.wait_rollout(
            api,
            namespace,
            "ctl",
            lambda o: h.cond(o, "Progressing").get("reason") == "WaitingForPromotion",
            "wave 0",
            op,
        )
        counts = obj["status"]["counts"]
        assert counts["offline"] == 10
        assert counts["failed"] == 0
        assert counts["updated"] == 10
        # Promote through the annotation, as a GitOps commit would.
        crds.kubectl(
            "annotate", "rollouts.edgefleet.io/ctl", "-n", namespace, "edgefleet.io/promote=1"
        )
        obj = h.wait_rollout(
            api, namespace, "ctl", lambda o: o["status"]["phase"] == "Completed", "completed", op
        )
        assert obj["status"]["counts"]["offline"] == 10
        assert all(h.desired_version(d) == "2.0.0" for d in h.devices(api, namespace))
        # Offline devices return and catch up.
        for name in (f"amd-{i:03d}" for i in range(0, 40, 4)):
            fleet.set_online(name, True)
        h.wait_rollout(
            api,
            namespace,
            "ctl",
            lambda o: o["status"]["counts"]["healthy"] == 50,
            "all healthy",
            op,
        )
        # A late joiner gets the rolled-out version.
        fleet.create(["late-000"], {"site": "berlin"}, "linux/amd64")
        wait_until(
            lambda: h.desired_version(h.get(api, namespace, "edgedevices", "late-000")) == "2.0.0",
            timeout=30,
            what="the late joiner assigned",
        )
        # Abort from the plugin rolls every device back (here: to no model at all).
        h.plugin(crds, namespace, "rollout", "abort", "ctl")
        obj = h.wait_rollout(
            api, namespace, "ctl", lambda o: o["status"]["phase"] == "Aborted", "aborted", op
        )
        assert h.cond(obj, "Aborted")["reason"] == "Aborted"
        wait_until(
            lambda: all(h.desired_version(d) is None for d in h.devices(api, namespace)),
            timeout=30,
            what="every device rolled back",
        )
        assert max(d["status"]["desiredRevision"] for d in h.devices(api, namespace)) == 2


def test_overlapping_rollouts_resolve_by_priority_and_a_tie_is_a_condition(
    crds, namespace, api, env, tmp_path
):
    h.put_model(api, namespace, "2.0.0")
    with h.fleet(crds, namespace, 20, 0, delay=0.05) as fleet:
        fleet.create(
            [f"line-{i:03d}" for i in range(10)], {"site": "berlin", "line": "a"}, "linux/amd64"
        )
        # Both rollouts exist before the operator starts: its first pass sees the overlap.
        # (Started first, it may give all 30 devices to "site" before "line" is applied;
        # "line" then takes its 10 back, which is right but is a second revision.)
        h.apply_rollout(crds, namespace, "site", maxUnavailable="100%", config={"MODE": "site"})
        h.apply_rollout(
            crds,
            namespace,
            "line",
            priority=10,
            maxUnavailable="100%",
            selector={"matchLabels": {"line": "a"}},
            config={"MODE": "line"},
        )
        with h.operator_process(env, tmp_path) as op:
            _overlap_resolved_by_priority(crds, namespace, api, op)


def _overlap_resolved_by_priority(crds, namespace, api, op) -> None:
    """The overlap of "site" and "line" is decided by priority; a tie is a condition."""
    site = h.wait_rollout(
        api,
        namespace,
        "site",
        lambda o: (o.get("status") or {}).get("phase") == "Completed",
        "site done",
        op,
    )
    h.wait_rollout(
        api,
        namespace,
        "line",
        lambda o: (o.get("status") or {}).get("phase") == "Completed",
        "line",
        op,
    )
    assert site["status"]["counts"]["selected"] == 20
    assert site["status"]["counts"]["lost"] == 10
    lost = site["status"]["lostDevices"]
    assert {n["name"] for n in lost} == {f"line-{i:03d}" for i in range(10)}
    assert all("line" in n["message"] and n["reason"] == "LostToHigherPriority" for n in lost)
    for d in h.devices(api, namespace):
        (want,) = d["status"]["desired"]
        expected = "line" if d["metadata"]["name"].startswith("line") else "site"
        assert want["rollout"] == expected
        assert want["config"]["MODE"] == expected
        assert d["status"]["desiredRevision"] == 1
    # Two active rollouts of the same model with the same priority: a tie, which
    # neither takes; the devices stay as they are.
    for name in ("twin", "triplet"):
        h.apply_rollout(
            crds,
            namespace,
            name,
            priority=20,
            paused=True,
            selector={"matchLabels": {"line": "a"}},
        )
    for name in ("twin", "triplet"):
        twin = h.wait_rollout(
            api,
            namespace,
            name,
            lambda o: h.cond(o, "DevicesSkipped").get("reason") == "PriorityTie",
            "tie",
            op,
        )
        assert "same priority" in h.cond(twin, "DevicesSkipped")["message"]
        assert twin["status"]["counts"]["selected"] == 0
        assert "PriorityTie" in h.events(crds, namespace, name)
    assert {d["status"]["desiredRevision"] for d in h.devices(api, namespace)} == {1}
    op.service.check_alive()


@pytest.mark.timeout(400)
def test_operator_sigkilled_mid_rollout_assigns_every_device_once(
    crds, namespace, api, env, tmp_path
):
    import random

    h.put_model(api, namespace, "2.0.0")
    # Kill points: random numbers of assigned devices, from the API server's view. The last
    # batch (10% of 200, written up to 32 at once) jumps from ~180 to 200, so a kill aimed
    # above 170 may land after the rollout is fully assigned: the targets stay below it.
    seed = random.randrange(2**32)  # noqa: S311
    targets = sorted(random.Random(seed).sample(range(5, 170), 4))  # noqa: S311
    kills: list[tuple[int, int]] = []

    def assigned() -> int:
        return sum(h.desired_version(d) == "2.0.0" for d in h.devices(api, namespace))

    with h.fleet(crds, namespace, 150, 50, delay=0.3), h.operator_process(env, tmp_path) as op:
        steps = [{"setWeight": 25}, {"setWeight": 50}]
        h.apply_rollout(crds, namespace, "kill", maxUnavailable="10%", canary={"steps": steps})
        for target in targets:
            wait_until(
                lambda t=target: assigned() >= t,
                timeout=120,
                what=f"{target} assigned",
                interval=0.02,
                alive=op.service.check_alive,
            )
            op.kill()
            kills.append((target, assigned()))
            op.start()
        obj = h.wait_rollout(
            api,
            namespace,
            "kill",
            lambda o: o["status"]["phase"] == "Completed",
            "done",
            op,
            timeout=240,
        )
        replay = f"kills (target, assigned after the kill) {kills}, seed {seed}"
        assert obj["status"]["counts"]["healthy"] == 200, replay
        devs = h.devices(api, namespace)
        assert all(h.desired_version(d) == "2.0.0" for d in devs), replay
        assert {d["status"]["desiredRevision"] for d in devs} == {1}, replay
        assert op.starts == 5
        assert all(n < 200 for _, n in kills), f"every kill lands mid-rollout: {replay}"
