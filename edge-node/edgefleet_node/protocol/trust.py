"""The trust bundle: the gateway CAs and signing keys a device trusts, with a serial.

It travels beside the desired-state document in its own DSSE envelope (payload type
:data:`TRUST_PAYLOAD_TYPE`) so keys can rotate; a device adopts a newer one only when a
key it already trusts signed it (:func:`edgefleet_node.protocol.desired.accept_trust`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgefleet_node.protocol import dsse, wire
from edgefleet_node.protocol.wire import ProtocolError

__all__ = ["TRUST_PAYLOAD_TYPE", "TrustBundle"]

TRUST_PAYLOAD_TYPE = "application/vnd.edgefleet.trust-bundle.v1+json"


@dataclass(frozen=True)
class TrustBundle:
    """The gateway CAs, document-signing keys and image-signing keys a device trusts."""

    serial: int
    gateway_cas: tuple[bytes, ...]
    signing_keys: tuple[bytes, ...]  # sign desired-state documents and trust bundles
    image_keys: tuple[bytes, ...]  # sign images (cosign format)

    def to_bytes(self) -> bytes:
        return wire.canonical(
            {
                "apiVersion": wire.PROTOCOL_VERSION,
                "kind": "TrustBundle",
                "serial": self.serial,
                "gatewayCAs": [p.decode("ascii") for p in self.gateway_cas],
                "signingKeys": [p.decode("ascii") for p in self.signing_keys],
                "imageKeys": [p.decode("ascii") for p in self.image_keys],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TrustBundle:
        what = "trust bundle"
        doc = wire.load(data, what, dsse.MAX_ENVELOPE)
        wire.only(
            doc, what, {"apiVersion", "kind", "serial", "gatewayCAs", "signingKeys", "imageKeys"}
        )
        if doc.get("apiVersion") != wire.PROTOCOL_VERSION or doc.get("kind") != "TrustBundle":
            raise ProtocolError(f"{what}: not a {wire.PROTOCOL_VERSION} TrustBundle")

        def pems(key: str) -> tuple[bytes, ...]:
            items = wire.req_list(doc, key, what, max_len=8)
            if not items or not all(isinstance(p, str) and len(p) < 16384 for p in items):
                raise ProtocolError(f"{what}: {key!r} must be a non-empty list of PEM strings")
            return tuple(p.encode("ascii") for p in items)

        bundle = cls(
            wire.req_int(doc, "serial", what),
            pems("gatewayCAs"),
            pems("signingKeys"),
            pems("imageKeys"),
        )
        dsse.TrustedKeys.from_pems(bundle.signing_keys)  # they must load
        return bundle

    def sign(self, keys: Sequence[Any]) -> dsse.Envelope:
        return dsse.sign(TRUST_PAYLOAD_TYPE, self.to_bytes(), keys)
