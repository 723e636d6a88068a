"""What a device may do and see: identity checks, its desired-state document, its digests.

Pure functions over an :class:`~edgefleet.api.edgedevice.EdgeDevice` as the gateway's
watch cache holds it, so every replica decides the same way:

- :func:`refusal` — may the holder of a client certificate with this subject and serial
  act as this device right now (exists, not deleted, not suspended, not revoked, serial
  recorded at enrolment)? Refusals never say whether another device exists.
- :func:`document_version` / :func:`build_document` — the signed document's content:
  version ``(status.desiredRevision << 32) | metadata.generation`` (monotonic, the same
  on every replica), the device's ``spec.config`` layered over each workload's config,
  ``platform = spec.platform``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Final

from edgefleet.api.edgedevice import DesiredWorkload, EdgeDevice
from edgefleet_node.protocol.desired import DesiredState, Probe, Workload

__all__ = [
    "DEFAULT_DOCUMENT_TTL",
    "Refusal",
    "build_document",
    "document_version",
    "refusal",
]

DEFAULT_DOCUMENT_TTL: Final = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: HTTP status, CamelCase reason, message for the device."""

    status: int
    reason: str
    message: str


_UNKNOWN = Refusal(
    403, "DeviceNotAllowed", "this certificate does not identify an enrolled, active device"
)


def refusal(device: EdgeDevice | None, serial_hex: str) -> Refusal | None:
    """``None`` when a certificate with ``serial_hex`` may act as ``device``."""
    if device is None or (device.metadata.model_extra or {}).get("deletionTimestamp"):
        return _UNKNOWN
    enrollment = device.status.enrollment if device.status is not None else None
    if enrollment is None:
        return _UNKNOWN
    serial = serial_hex.lower().lstrip("0") or "0"
    known = {
        s.lower().lstrip("0") or "0"
        for s in (enrollment.certificate_serial, enrollment.previous_serial)
        if s is not None
    }
    if serial not in known:
        return Refusal(
            403, "CertificateSuperseded", "this certificate was replaced: use the newest one"
        )
    if enrollment.revoked:
        return Refusal(403, "Revoked", "the device was revoked: enrol again with a new token")
    if device.spec.suspended:
        return Refusal(403, "Suspended", "the device is suspended (spec.suspended)")
    return None


def document_version(device: EdgeDevice) -> int:
    revision = device.status.desired_revision if device.status is not None else None
    return ((revision or 0) << 32) | (device.metadata.generation or 0)


def _workload(device: EdgeDevice, want: DesiredWorkload) -> Workload:
    probe = None
    if want.probe is not None:
        p = want.probe
        probe = Probe(
            p.input_name,
            tuple(p.shape),
            tuple(p.values),
            p.output_name,
            tuple(p.expected),
            p.tolerance,
        )
    return Workload(
        name=want.model,
        version=want.version,
        repository=want.repository,
        index_digest=want.index_digest,
        manifest_digest=want.image_digest,
        platform=device.spec.platform,
        probe=probe,
        config={**want.config, **device.spec.config},
        host_devices=tuple(want.host_devices),
        rollout=want.rollout,
    )


def build_document(
    device: EdgeDevice,
    now: datetime.datetime,
    ttl: datetime.timedelta = DEFAULT_DOCUMENT_TTL,
) -> DesiredState:
    """The unsigned desired-state document for ``device``."""
    desired = device.status.desired if device.status is not None else []
    now = now.replace(microsecond=0)
    return DesiredState(
        namespace=device.metadata.namespace or "",
        device=device.metadata.name,
        version=document_version(device),
        issued_at=now,
        expires_at=now + ttl,
        workloads=tuple(_workload(device, w) for w in sorted(desired, key=lambda w: w.model)),
    )
