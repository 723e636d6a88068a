"""EdgeDevice status as the gateway computes it: conditions, write-on-change, coarse
lastSeen, documents and access decisions — tables with an injected ``now``."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from edgefleet.api.edgedevice import CurrentWorkload, EdgeDevice, Enrollment
from edgefleet.domain import deviceaccess, devicestatus
from edgefleet.domain.devicestatus import Observation
from edgefleet.gateway.status import only_metrics_changed, stored_owned
from edgefleet_node.protocol.desired import config_version

T0 = datetime.datetime(2026, 11, 24, 4, 0, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
SERIAL = "abc123"


def _device(
    *,
    enrolled: bool = True,
    suspended: bool = False,
    revoked: bool = False,
    not_after: datetime.datetime = T0 + 24 * HOUR,
    desired: list[dict[str, Any]] | None = None,
    status: dict[str, Any] | None = None,
    config: dict[str, str] | None = None,
) -> EdgeDevice:
    st: dict[str, Any] = dict(status or {})
    if enrolled:
        st["enrollment"] = {
            "certificateSerial": SERIAL,
            "notAfter": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "instanceId": "f" * 32,
            "revoked": revoked,
        }
    if desired is not None:
        st["desired"] = desired
        st["desiredRevision"] = 3
    return EdgeDevice.model_validate(
        {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": "cam", "namespace": "site", "generation": 2},
            "spec": {"platform": "linux/arm64", "suspended": suspended, "config": config or {}},
            "status": st,
        }
    )


def _desired(model: str = "resnet", digest: str = D1, cfg: dict[str, str] | None = None):
    return {
        "model": model,
        "version": "1.0.0",
        "repository": "edgefleet/models/site/resnet",
        "indexDigest": D2,
        "imageDigest": digest,
        "config": cfg or {},
    }


def _current(digest: str = D1, health: str = "Healthy", **kw: Any) -> CurrentWorkload:
    return CurrentWorkload(
        model="resnet", version="1.0.0", image_digest=digest, health=health, **kw
    )


def _conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def _apply(device: EdgeDevice, status: dict[str, Any]) -> EdgeDevice:
    raw = device.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["status"] = {**raw.get("status", {}), **status}
    return EdgeDevice.model_validate(raw)


ONLINE = Observation(T0, online=True, replica="gw-a", seen=True)


@pytest.mark.parametrize(
    ("device", "obs", "expect"),
    [
        (
            _device(enrolled=False),
            Observation(T0),
            {"Enrolled": ("False", "AwaitingEnrollment"), "Ready": ("False", "AwaitingEnrollment"),
             "Stalled": ("False", "Reconciled"), "Online": ("Unknown", "NeverSeen")},
        ),
        (
            _device(desired=[]),
            ONLINE,
            {"Enrolled": ("True", "Enrolled"), "Online": ("True", "Polling"),
             "Ready": ("True", "Reconciled"), "Reconciling": ("False", "Reconciled")},
        ),
        (
            _device(desired=[_desired()]),
            ONLINE,
            {"Ready": ("False", "Updating"), "Reconciling": ("True", "Updating")},
        ),
        (
            _device(desired=[_desired()]),
            Observation(T0, online=True, replica="gw-a", current=[_current()]),
            {"Ready": ("True", "Reconciled"), "Reconciling": ("False", "Reconciled")},
        ),
        (
            _device(desired=[_desired()]),
            Observation(T0, online=True, replica="gw-a", current=[_current(health="Unhealthy")]),
            {"Ready": ("False", "Updating")},
        ),
        (
            _device(desired=[_desired()]),
            Observation(T0, online=False, replica="gw-a", current=[_current()]),
            {"Online": ("False", "HeartbeatMissed"), "Ready": ("False", "Offline")},
        ),
        (
            _device(desired=[_desired(digest=D2)]),
            Observation(
                T0, online=True, replica="gw-a", current=[_current()],
                agent_conditions=(("UpdateFailed", "True", "ProbeFailed", "wrong answer"),),
            ),
            {"UpdateFailed": ("True", "ProbeFailed"), "Stalled": ("True", "ProbeFailed"),
             "Ready": ("False", "ProbeFailed"), "Reconciling": ("False", "Reconciled")},
        ),
        (
            _device(suspended=True),
            ONLINE,
            {"Ready": ("False", "Suspended"), "Stalled": ("False", "Reconciled")},
        ),
        (
            _device(revoked=True),
            ONLINE,
            {"Enrolled": ("False", "Revoked"), "Stalled": ("True", "Revoked")},
        ),
        (
            _device(not_after=T0 - HOUR),
            ONLINE,
            {"Enrolled": ("False", "CertificateExpired"), "Ready": ("False", "CertificateExpired")},
        ),
        (
            _device(enrolled=False),
            Observation(T0, enrollment_refused=("PlatformMismatch", "arm64 vs amd64")),
            {"Enrolled": ("False", "PlatformMismatch"), "Stalled": ("True", "PlatformMismatch")},
        ),
        (
            _device(),
            Observation(T0, duplicate="two installations"),
            {"DuplicateIdentity": ("True", "DuplicateIdentity"),
             "Stalled": ("True", "DuplicateIdentity")},
        ),
    ],
)  # fmt: skip
def test_conditions(device, obs, expect):
    status = devicestatus.compute(device, obs, last_seen_interval=HOUR)
    conds = _conds(status)
    for type_, value in expect.items():
        assert conds[type_] == value, type_


def test_config_version_must_match_the_merged_configuration():
    device = _device(desired=[_desired(cfg={"A": "1"})], config={"B": "2"})
    stale = _current(config_version=config_version({"A": "1"}))
    good = _current(config_version=config_version({"A": "1", "B": "2"}))
    for current, ready in ((stale, "False"), (good, "True")):
        obs = Observation(T0, online=True, replica="gw-a", current=[current])
        status = devicestatus.compute(device, obs, last_seen_interval=HOUR)
        assert _conds(status)["Ready"][0] == ready


def test_a_heartbeat_that_changes_nothing_computes_the_stored_status():
    device = _device(desired=[])
    first = devicestatus.compute(device, ONLINE, last_seen_interval=HOUR)
    device = _apply(device, first)
    for minutes in (1, 10, 59):
        later = Observation(T0 + datetime.timedelta(minutes=minutes), online=True,
                            replica="gw-a", seen=True)  # fmt: skip
        again = devicestatus.compute(device, later, last_seen_interval=HOUR)
        assert again == stored_owned(device), minutes
    later = Observation(T0 + HOUR, online=True, replica="gw-a", seen=True)
    moved = devicestatus.compute(device, later, last_seen_interval=HOUR)
    assert moved["lastSeen"] == "2026-11-24T05:00:00Z"  # coarse: once per interval
    assert moved["conditions"] == first["conditions"]


def test_online_holder_changes_without_flapping_transition_time():
    device = _apply(_device(), devicestatus.compute(_device(), ONLINE, last_seen_interval=HOUR))
    assert devicestatus.online_holder(device) == "gw-a"
    moved = Observation(T0 + 60 * datetime.timedelta(seconds=1), online=True, replica="gw-b",
                        seen=True)  # fmt: skip
    status = devicestatus.compute(device, moved, last_seen_interval=HOUR)
    online = next(c for c in status["conditions"] if c["type"] == "Online")
    assert online["message"].endswith("gw-b")
    assert online["lastTransitionTime"] == "2026-11-24T04:00:00Z"


def test_revoked_belongs_to_the_cli_unless_a_new_enrolment():
    device = _device(revoked=True)
    status = devicestatus.compute(device, ONLINE, last_seen_interval=HOUR)
    assert "revoked" not in status["enrollment"]
    fresh = Enrollment(certificate_serial="beef", not_after="2026-12-01T00:00:00Z")
    status = devicestatus.compute(
        device, Observation(T0, enrollment=fresh, fresh=True), last_seen_interval=HOUR
    )
    assert status["enrollment"]["revoked"] is False
    assert _conds(status)["Enrolled"] == ("True", "Enrolled")


def test_counter_only_changes_are_recognised():
    device = _device(desired=[_desired()], status={"current": [_current().wire()], "reportSeq": 1})
    old = stored_owned(device)
    busier = _current(requests=10, errors=1, p95_latency_ms=4.0)
    new = devicestatus.compute(
        device, Observation(T0, current=[busier], report_seq=2), last_seen_interval=HOUR
    )
    assert only_metrics_changed(old, {**old, "current": new["current"], "reportSeq": 2})
    unhealthy = devicestatus.compute(
        device, Observation(T0, current=[_current(health="Unhealthy")]), last_seen_interval=HOUR
    )
    assert not only_metrics_changed(old, unhealthy)


@pytest.mark.parametrize(
    ("device", "serial", "reason"),
    [
        (None, SERIAL, "DeviceNotAllowed"),
        (_device(enrolled=False), SERIAL, "DeviceNotAllowed"),
        (_device(), "0" + SERIAL, None),
        (_device(), "def", "CertificateSuperseded"),
        (_device(revoked=True), SERIAL, "Revoked"),
        (_device(suspended=True), SERIAL, "Suspended"),
    ],
)
def test_access(device, serial, reason):
    refusal = deviceaccess.refusal(device, serial)
    assert (refusal.reason if refusal else None) == reason


def test_document_version_layers_and_platform():
    device = _device(desired=[_desired(cfg={"A": "1", "B": "1"})], config={"B": "2"})
    doc = deviceaccess.build_document(device, T0)
    assert doc.version == (3 << 32) | 2
    assert (doc.namespace, doc.device) == ("site", "cam")
    (w,) = doc.workloads
    assert dict(w.config) == {"A": "1", "B": "2"}
    assert w.platform == "linux/arm64"
    assert w.manifest_digest == D1
    assert doc.expires_at - doc.issued_at == datetime.timedelta(hours=24)


def test_observed_generation_follows_the_spec_so_kstatus_can_say_current():
    device = _device(desired=[])
    first = devicestatus.compute(device, ONLINE, last_seen_interval=HOUR)
    assert first["observedGeneration"] == device.metadata.generation
    assert stored_owned(_apply(device, first)) == first  # no second write for it
