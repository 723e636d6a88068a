"""The rollout controller's cache never goes back to an older resourceVersion: a watch
event that arrives after the controller's own write must not undo it (that would make
the next pass write the device again)."""

from __future__ import annotations

from edgefleet.handlers.rollout import FleetCache


def _device(rv: str, version: str | None) -> dict:
    status = {}
    if version:
        status["desired"] = [
            {
                "model": "det",
                "version": version,
                "repository": "r",
                "indexDigest": "sha256:" + "a" * 64,
                "imageDigest": "sha256:" + "b" * 64,
            }
        ]
    return {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": "d", "namespace": "ns", "resourceVersion": rv},
        "spec": {"platform": "linux/amd64"},
        "status": status or None,
    }


def test_an_older_event_never_replaces_a_newer_write():
    cache = FleetCache()
    assert cache.put("edgedevices", _device("10", None))
    assert cache.put("edgedevices", _device("12", "2.0.0"))  # the controller's write
    assert not cache.put("edgedevices", _device("11", None))  # a late watch event
    (dev,) = cache.items("edgedevices", "ns")
    assert dev.status.desired[0].version == "2.0.0"
    assert cache.put("edgedevices", _device("12", None), deleted=True)
    assert cache.items("edgedevices") == []


def test_an_invalid_object_is_kept_out():
    cache = FleetCache()
    bad = _device("5", None)
    bad["spec"]["platform"] = "linux/riscv64"
    assert not cache.put("edgedevices", bad)
    assert cache.items("edgedevices") == []


class _Api:
    """Stand-in for RolloutApi that keeps what was applied (unit test only)."""

    def __init__(self) -> None:
        self.statuses: dict[tuple[str, str], dict] = {}

    def apply_status(self, namespace, name, status):
        self.statuses[(namespace, name)] = status.wire()
        return {
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "99"},
            "status": status.wire(),
        }


def test_a_rollout_the_models_refuse_gets_a_stalled_status():
    from edgefleet.handlers.rollout import RolloutController

    api = _Api()
    controller = RolloutController(api)  # type: ignore[arg-type]
    body = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "old", "namespace": "ns", "generation": 3, "resourceVersion": "7"},
        "spec": {"model": {"name": "det", "version": "1"}, "selector": {"matchLabels": {}}},
    }
    controller.observe("rollouts", "ADDED", body)
    controller.run_pass()
    status = api.statuses[("ns", "old")]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Stalled"]["status"] == "True"
    assert conds["Stalled"]["reason"] == "InvalidSpec"
    assert "selector" in conds["Stalled"]["message"]
    assert conds["Ready"]["status"] == "False"
    assert status["observedGeneration"] == 3
