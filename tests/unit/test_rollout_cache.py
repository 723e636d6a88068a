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
