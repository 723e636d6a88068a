"""Rollouts end to end, the happy path: the real API server, the operator as its own process
(rollout controller only) and 200 fake-fleet devices (edgefleet.testing.fakefleet). A new
rollout is InProgress before any controller looks, a three-step canary completes with
counts, conditions, events and plugin output, and ``kubectl wait`` fails fast for a
missing model. Assignments are counted by each device's desiredRevision."""

from __future__ import annotations

import json
import subprocess

from edgefleet.testing import kstatus
from tests.e2e import rollout_helpers as h


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
