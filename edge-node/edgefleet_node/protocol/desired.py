"""The desired-state document: what one device should run, signed.

The gateway builds it from ``EdgeDevice.status.desired`` (written by the rollout
controller), signs it (:mod:`~edgefleet_node.protocol.dsse`) with every active
signing key, and serves it on the long-poll. The device accepts a document only through
:func:`accept`, which refuses, each with its own error (and condition reason):

- a signature by no trusted key (arbitrary software)          -> ``SignatureInvalid``
- a document for another device (mix-and-match)               -> ``WrongDevice``
- a version below the one it holds (rollback)                 -> ``Downgrade``
- the same version with other content (replay, equivocation)  -> ``Replay``
- a document past its expiry (indefinite freeze)               -> ``Expired``

The same version with the same content and a later expiry is a refresh, accepted.
The trust bundle (gateway CAs and signing keys, for rotation) travels in its own
envelope with its own serial; a device adopts a new one only when a key it already
trusts signed it (:func:`accept_trust`).

The parts live in their own modules and are re-exported here:
:mod:`~edgefleet_node.protocol.workload` (:class:`Workload`, :class:`Probe`,
:func:`config_version`) and :mod:`~edgefleet_node.protocol.trust` (:class:`TrustBundle`).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgefleet_node.protocol import dsse, wire
from edgefleet_node.protocol.trust import TRUST_PAYLOAD_TYPE, TrustBundle
from edgefleet_node.protocol.wire import ProtocolError
from edgefleet_node.protocol.workload import Probe, Workload, config_version

__all__ = [
    "DESIRED_PAYLOAD_TYPE",
    "TRUST_PAYLOAD_TYPE",
    "DesiredState",
    "DocumentRejectedError",
    "PollResponse",
    "Probe",
    "TrustBundle",
    "Workload",
    "accept",
    "accept_trust",
    "config_version",
]

DESIRED_PAYLOAD_TYPE = "application/vnd.edgefleet.desired-state.v1+json"
MAX_WORKLOADS = 16


class DocumentRejectedError(ProtocolError):
    """A document the device must not act on; ``reason`` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DesiredState:
    namespace: str
    device: str
    version: int
    issued_at: datetime.datetime
    expires_at: datetime.datetime
    workloads: tuple[Workload, ...]

    def content(self) -> dict[str, Any]:
        """What the version stands for (everything but the times)."""
        return {
            "apiVersion": wire.PROTOCOL_VERSION,
            "kind": "DesiredState",
            "device": {"namespace": self.namespace, "name": self.device},
            "version": self.version,
            "workloads": [w.to_json() for w in self.workloads],
        }

    def content_digest(self) -> str:
        return "sha256:" + wire.sha256_hex(wire.canonical(self.content()))

    def to_bytes(self) -> bytes:
        doc = self.content()
        doc["issuedAt"] = wire.format_time(self.issued_at)
        doc["expiresAt"] = wire.format_time(self.expires_at)
        return wire.canonical(doc)

    def sign(self, keys: Sequence[Any]) -> dsse.Envelope:
        return dsse.sign(DESIRED_PAYLOAD_TYPE, self.to_bytes(), keys)

    @classmethod
    def from_bytes(cls, data: bytes) -> DesiredState:
        what = "desired state"
        doc = wire.load(data, what, dsse.MAX_ENVELOPE)
        wire.only(doc, what, {"apiVersion", "kind", "device", "version", "issuedAt",
                              "expiresAt", "workloads"})  # fmt: skip
        if doc.get("apiVersion") != wire.PROTOCOL_VERSION or doc.get("kind") != "DesiredState":
            raise ProtocolError(f"{what}: not a {wire.PROTOCOL_VERSION} DesiredState")
        device = wire.req_obj(doc, "device", what)
        wire.only(device, f"{what} device", {"namespace", "name"})
        workloads = tuple(
            Workload.from_json(w, f"workload {i}")
            for i, w in enumerate(wire.req_list(doc, "workloads", what, max_len=MAX_WORKLOADS))
        )
        names = [w.name for w in workloads]
        if len(set(names)) != len(names):
            raise ProtocolError(f"{what}: workload names repeat")
        return cls(
            namespace=wire.check_name(wire.req_str(device, "namespace", what), "namespace"),
            device=wire.check_name(wire.req_str(device, "name", what), "device"),
            version=wire.req_int(doc, "version", what),
            issued_at=wire.parse_time(wire.req_str(doc, "issuedAt", what, max_len=64), what),
            expires_at=wire.parse_time(wire.req_str(doc, "expiresAt", what, max_len=64), what),
            workloads=workloads,
        )


def accept(
    envelope: dsse.Envelope,
    trusted: dsse.TrustedKeys,
    *,
    namespace: str,
    device: str,
    held: DesiredState | None,
    now: datetime.datetime,
) -> DesiredState:
    """The document in ``envelope`` if this device may act on it; else raise
    :class:`DocumentRejectedError` with the condition reason."""
    try:
        body = dsse.verify(envelope, DESIRED_PAYLOAD_TYPE, trusted)
    except dsse.SignatureInvalidError as exc:
        raise DocumentRejectedError("SignatureInvalid", f"desired state: {exc}") from exc
    try:
        doc = DesiredState.from_bytes(body)
    except ProtocolError as exc:
        raise DocumentRejectedError("Malformed", str(exc)) from exc
    if (doc.namespace, doc.device) != (namespace, device):
        raise DocumentRejectedError(
            "WrongDevice",
            f"the document is for {doc.namespace}/{doc.device}, not {namespace}/{device}",
        )
    if doc.expires_at <= now:
        raise DocumentRejectedError(
            "Expired",
            f"the document expired at {wire.format_time(doc.expires_at)} "
            f"(device clock {wire.format_time(now)})",
        )
    if held is not None:
        if doc.version < held.version:
            raise DocumentRejectedError(
                "Downgrade", f"version {doc.version} is older than the held {held.version}"
            )
        if doc.version == held.version and doc.content_digest() != held.content_digest():
            raise DocumentRejectedError(
                "Replay", f"version {doc.version} arrived again with different content"
            )
    return doc


def accept_trust(
    envelope: dsse.Envelope, trusted: dsse.TrustedKeys, held_serial: int
) -> TrustBundle | None:
    """A newer trust bundle signed by a key the device trusts today; ``None`` when it is
    not newer. A signing-key rotation therefore overlaps: the bundle naming old and new
    keys is signed by the old one, and the one that drops the old key by the new one."""
    try:
        body = dsse.verify(envelope, TRUST_PAYLOAD_TYPE, trusted)
    except dsse.SignatureInvalidError as exc:
        raise DocumentRejectedError("SignatureInvalid", f"trust bundle: {exc}") from exc
    bundle = TrustBundle.from_bytes(body)
    return bundle if bundle.serial > held_serial else None


@dataclass(frozen=True)
class PollResponse:
    """The body of a 200 answer to the desired-state long-poll."""

    desired: dsse.Envelope
    trust: dsse.Envelope

    def to_bytes(self) -> bytes:
        return wire.canonical({"desired": self.desired.to_json(), "trust": self.trust.to_json()})

    @classmethod
    def from_bytes(cls, data: bytes) -> PollResponse:
        what = "poll response"
        doc = wire.load(data, what, 2 * dsse.MAX_ENVELOPE)
        wire.only(doc, what, {"desired", "trust"})
        return cls(
            dsse.Envelope.from_bytes(wire.canonical(wire.req_obj(doc, "desired", what))),
            dsse.Envelope.from_bytes(wire.canonical(wire.req_obj(doc, "trust", what))),
        )
