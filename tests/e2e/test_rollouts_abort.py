"""Rollouts end to end when they are stopped: a first wave that fails its probe aborts and
rolls back (the rest never get it), and pause, promote, abort from the plugin and
annotations with offline devices and a late joiner. The real API server, the operator
as its own process (rollout controller only) and fake-fleet devices."""

from __future__ import annotations

from edgefleet.testing import kstatus
from edgefleet.testing.procs import wait_until
from tests.e2e import rollout_helpers as h


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
