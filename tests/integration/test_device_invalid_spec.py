"""An EdgeDevice the API server holds but the models refuse is Stalled, reason InvalidSpec.

The API server and the models agree on every field of a new object (the schema is
generated from the models and a property test holds them to it), so the object is made
the way such objects come to exist: stored while the CRD was looser (before a rule
existed — here the ``spec.platform`` enum is taken out of the live CRD, the device
created with a platform edgefleet does not know, and the CRD put back). A real gateway
replica, against the real API server, must then record it: ``Stalled=True`` reason
``InvalidSpec`` naming the field, a Warning Event, the rollout controller's
``status.desired`` untouched; and clear it once the spec is fixed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.api.conditions import Reason
from edgefleet.testing.procs import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "edgedevices.edgefleet.io.yaml"
ENUM = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/platform/enum"


def _device(namespace: str, name: str, platform: str) -> str:
    return json.dumps(
        {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"platform": platform},
        }
    )


def _create(cp, namespace: str, name: str, platform: str, *, dry_run: bool = False) -> bool:
    args = ["create", "-f", "-", *(["--dry-run=server"] if dry_run else [])]
    done = cp.kubectl(*args, input_text=_device(namespace, name, platform), check=False)
    return done.returncode == 0


def _restore_crd(cp) -> None:
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))


def test_a_device_stored_before_a_rule_existed_is_stalled_invalid_spec(crds, fleet):
    ns = fleet.namespace
    crds.kubectl("patch", "crd", "edgedevices.edgefleet.io", "--type=json",
                 "-p", json.dumps([{"op": "remove", "path": ENUM}]))  # fmt: skip
    try:
        wait_until(
            lambda: _create(crds, ns, "old-cam", "linux/riscv64"),
            timeout=30,
            interval=0.3,
            what="the looser schema to accept linux/riscv64",
        )
    finally:
        _restore_crd(crds)
    wait_until(
        lambda: not _create(crds, ns, "probe", "linux/riscv64", dry_run=True),
        timeout=30,
        interval=0.3,
        what="the CRD's enum to be back",
    )
    fleet.set_desired("old-cam", 1, {"resnet": "1.0.0"})  # the rollout controller's field

    def stalled() -> dict | None:
        cond = fleet.condition("old-cam", "Stalled")
        return cond if cond and cond["status"] == "True" else None

    wait_until(lambda: stalled() is not None, timeout=30, interval=0.2, what="old-cam Stalled=True")
    cond = stalled()
    assert cond is not None
    assert cond["reason"] == Reason.INVALID_SPEC
    assert "spec.platform" in cond["message"]
    obj = fleet.get("old-cam")
    assert cond["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    ready = fleet.condition("old-cam", "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", Reason.INVALID_SPEC)
    assert [w["model"] for w in obj["status"]["desired"]] == ["resnet"], "not the gateway's"
    events = json.loads(
        crds.kubectl(
            "get", "events", "-n", ns, "-o", "json",
            "--field-selector", "involvedObject.name=old-cam,reason=InvalidSpec",
        ).stdout
    )["items"]  # fmt: skip
    assert [e["type"] for e in events] == ["Warning"]
    assert "spec.platform" in events[0]["message"]

    fleet.patch_spec("old-cam", {"platform": "linux/arm64"})  # the user fixes it
    fleet.wait_condition("old-cam", "Stalled", "False")
    ready = fleet.condition("old-cam", "Ready")
    assert ready is not None
    assert ready["reason"] == Reason.AWAITING_ENROLLMENT
