"""EdgeDevice status follows the reconcile pattern: a body the models refuse and an
exception computing the status both end in a typed, written status (never silence).

The pure part (:func:`devicefailure.from_failure`) as a table; the writer against a
stand-in API server that keeps the applied status and the Events posted."""

from __future__ import annotations

import asyncio
import copy
import datetime
from typing import Any

import pytest

from edgefleet.api.conditions import Reason
from edgefleet.clients.devicecache import DeviceCache
from edgefleet.clients.kube import KubeError
from edgefleet.domain import devicefailure
from edgefleet.domain.failures import Failure
from edgefleet.gateway.metrics import GatewayMetrics
from edgefleet.gateway.status import StatusComputeError, StatusWriter

T0 = datetime.datetime(2026, 11, 24, 4, 0, tzinfo=datetime.UTC)
DIGEST = "sha256:" + "1" * 64
KEY = ("site", "cam")


def _stored() -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "enrollment": {"certificateSerial": "abc", "notAfter": "2027-01-01T00:00:00Z",
                       "revoked": False},
        "current": [{"model": "m", "version": "1", "imageDigest": DIGEST, "health": "Healthy"}],
        "desired": [{"model": "m", "version": "1", "repository": "r", "indexDigest": DIGEST,
                     "imageDigest": DIGEST}],
        "desiredRevision": 4,
        "lastSeen": "2026-11-24T03:00:00Z",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "",
             "lastTransitionTime": "2026-11-24T03:00:00Z", "observedGeneration": 1},
            {"type": "Stalled", "status": "False", "reason": "Reconciled", "message": "",
             "lastTransitionTime": "2026-11-24T03:00:00Z", "observedGeneration": 1},
        ],
    }  # fmt: skip


def _conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


INVALID = Failure(Reason.INVALID_SPEC, "spec.platform: Input should be 'linux/amd64'", True)
BUG = Failure(Reason.INTERNAL_ERROR, "KeyError: 'x'", False)


@pytest.mark.parametrize(
    ("failure", "stalled", "reconciling"),
    [(INVALID, "True", "False"), (BUG, "False", "True")],
    ids=["permanent", "temporary"],
)
def test_from_failure_sets_kstatus_and_keeps_what_the_gateway_owns(failure, stalled, reconciling):
    out = devicefailure.from_failure(_stored(), generation=2, failure=failure, now=T0)
    conds = _conds(out)
    assert (conds["Stalled"]["status"], conds["Reconciling"]["status"]) == (stalled, reconciling)
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", failure.reason)
    assert failure.message in conds["Ready"]["message"]
    assert {c["observedGeneration"] for c in conds.values()} == {2}
    assert out["observedGeneration"] == 2
    assert out["current"] == _stored()["current"], "the gateway's fields are kept"
    assert out["lastSeen"] == _stored()["lastSeen"]
    assert "revoked" not in out["enrollment"], "edgefleet-cli owns revoked"
    assert "desired" not in out, "the rollout controller owns desired"
    assert "desiredRevision" not in out
    # A second pass over what was written computes the same: no write, no Event.
    again = devicefailure.from_failure(
        {**_stored(), **out}, generation=2, failure=failure, now=T0 + datetime.timedelta(hours=1)
    )
    assert again == devicefailure.owned_part({**_stored(), **out})


class FakeKube:
    """The API server's EdgeDevice status subresource and Events, as far as the writer
    uses them: apply merges the gateway's status over the stored one."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = copy.deepcopy(raw)
        self.events: list[dict[str, Any]] = []
        self.applies = 0

    async def apply(self, path: str, body: dict[str, Any], *, manager: str) -> dict[str, Any]:
        assert path.endswith("/status")
        assert manager == "edgefleet-gateway"
        if body["metadata"]["resourceVersion"] != self.raw["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified")
        self.applies += 1
        self.raw["status"] = {**(self.raw.get("status") or {}), **body["status"]}
        rv = int(self.raw["metadata"]["resourceVersion"]) + 1
        self.raw["metadata"]["resourceVersion"] = str(rv)
        return copy.deepcopy(self.raw)

    async def request(self, method: str, path: str, *, body: Any = None) -> dict[str, Any]:
        assert (method, path) == ("POST", "/api/v1/namespaces/site/events")
        self.events.append(body)
        return body

    def condition(self, type_: str) -> dict[str, Any]:
        return _conds(self.raw["status"])[type_]


def _raw(platform: str = "linux/riscv64") -> dict[str, Any]:
    return {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": "cam", "namespace": "site", "generation": 2, "uid": "u-1",
                     "resourceVersion": "7"},
        "spec": {"platform": platform},
        "status": _stored(),
    }  # fmt: skip


async def _flush(writer: StatusWriter) -> None:
    """What the writer's loop does when woken: every queued write, done when it returns."""
    await writer.drain()
    assert not writer.pending()
    assert not writer._refused


def _writer(kube: FakeKube) -> tuple[DeviceCache, StatusWriter]:
    cache = DeviceCache(kube)  # type: ignore[arg-type]
    writer = StatusWriter(
        kube,  # type: ignore[arg-type]
        cache,
        GatewayMetrics(),
        replica="gw-a",
        last_seen_interval=datetime.timedelta(minutes=1),
        write_rate=1000.0,
    )
    return cache, writer


def test_a_device_the_models_refuse_is_stalled_invalid_spec_with_an_event():
    async def scenario() -> None:
        kube = FakeKube(_raw())
        cache, writer = _writer(kube)
        cache._put(copy.deepcopy(kube.raw), KEY)  # what the watch delivers
        assert cache.get(*KEY) is None, "refused, as before"
        await _flush(writer)
        stalled = kube.condition("Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", Reason.INVALID_SPEC)
        assert "spec.platform" in stalled["message"]
        assert kube.condition("Ready")["status"] == "False"
        assert kube.raw["status"]["desired"] == _stored()["desired"], "not the gateway's"
        assert [(e["type"], e["reason"]) for e in kube.events] == [("Warning", Reason.INVALID_SPEC)]
        assert kube.events[0]["involvedObject"]["uid"] == "u-1"
        # Our own write comes back through the watch: nothing more is written.
        cache._put(copy.deepcopy(kube.raw), KEY)
        await _flush(writer)
        assert (kube.applies, len(kube.events)) == (1, 1)
        # The user fixes the spec: the next change recomputes and clears Stalled.
        kube.raw["spec"]["platform"] = "linux/arm64"
        kube.raw["metadata"]["generation"] = 3
        cache._put(copy.deepcopy(kube.raw), KEY)
        assert cache.get(*KEY) is not None
        await _flush(writer)
        stalled = kube.condition("Stalled")
        assert (stalled["status"], stalled["observedGeneration"]) == ("False", 3)
        assert kube.condition("Ready")["reason"] != Reason.INVALID_SPEC

    asyncio.run(scenario())


def test_an_exception_computing_the_status_is_written_not_swallowed():
    async def scenario() -> None:
        kube = FakeKube(_raw("linux/arm64"))
        cache, writer = _writer(kube)
        cache._put(copy.deepcopy(kube.raw), KEY)

        def broken(*_: Any) -> dict[str, Any]:
            raise KeyError("lastSeen")

        writer.status_for = broken  # type: ignore[method-assign]
        from edgefleet.domain.devicestatus import Observation

        with pytest.raises(StatusComputeError, match="KeyError"):
            await writer.write(KEY, Observation(T0, seen=True), kind="report")
        busy = kube.condition("Reconciling")
        assert (busy["status"], busy["reason"]) == ("True", Reason.INTERNAL_ERROR)
        assert "KeyError" in busy["message"]
        assert kube.condition("Stalled")["status"] == "False"
        assert kube.condition("Ready")["reason"] == Reason.INTERNAL_ERROR
        assert kube.raw["status"]["current"] == _stored()["current"]
        assert [e["reason"] for e in kube.events] == [Reason.INTERNAL_ERROR]

    asyncio.run(scenario())
