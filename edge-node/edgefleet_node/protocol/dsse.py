"""Signed envelopes in the DSSE format (in-toto's Dead Simple Signing Envelope).

``{"payloadType": T, "payload": base64(body), "signatures": [{"keyid": K, "sig": base64(DER)}]}``
The signature covers the pre-authentication encoding
``"DSSEv1" SP len(T) SP T SP len(body) SP body``, so the type cannot be swapped and
the payload is verified as bytes before it is parsed. Keys are ECDSA P-256; a key id is
the hex SHA-256 of the key's SubjectPublicKeyInfo (DER). Several signatures let a
signing-key rotation overlap: the gateway signs with every active key, a device
accepts any key it trusts.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet_node.protocol import wire
from edgefleet_node.protocol.wire import ProtocolError

__all__ = [
    "MAX_ENVELOPE",
    "Envelope",
    "SignatureInvalidError",
    "TrustedKeys",
    "key_id",
    "pae",
    "sign",
    "verify",
]

MAX_ENVELOPE = 1024 * 1024
_MAX_SIGNATURES = 8


class SignatureInvalidError(ProtocolError):
    """No signature by a trusted key verifies over the payload."""


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return wire.sha256_hex(spki)


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys a device accepts signatures from, by key id."""

    keys: Mapping[str, ec.EllipticCurvePublicKey]

    @classmethod
    def from_pems(cls, pems: Iterable[bytes]) -> TrustedKeys:
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for pem in pems:
            try:
                key = serialization.load_pem_public_key(pem)
            except ValueError as exc:
                raise ProtocolError(f"a trusted key is not a PEM public key: {exc}") from exc
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
                key.curve, ec.SECP256R1
            ):
                raise ProtocolError("trusted keys must be ECDSA P-256")
            keys[key_id(key)] = key
        if not keys:
            raise ProtocolError("no trusted keys")
        return cls(keys)

    def pems(self) -> list[bytes]:
        return [
            k.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            for _, k in sorted(self.keys.items())
        ]


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, DER signature)

    def to_json(self) -> dict[str, object]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [
                {"keyid": kid, "sig": base64.b64encode(sig).decode("ascii")}
                for kid, sig in self.signatures
            ],
        }

    def to_bytes(self) -> bytes:
        return wire.canonical(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        what = "signed envelope"
        doc = wire.load(data, what, MAX_ENVELOPE)
        wire.only(doc, what, {"payloadType", "payload", "signatures"})
        payload_type = wire.req_str(doc, "payloadType", what, max_len=128)
        try:
            payload = base64.b64decode(
                wire.req_str(doc, "payload", what, max_len=MAX_ENVELOPE), validate=True
            )
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(f"{what}: payload is not base64") from exc
        signatures: list[tuple[str, bytes]] = []
        for raw in wire.req_list(doc, "signatures", what, max_len=_MAX_SIGNATURES):
            if not isinstance(raw, dict):
                raise ProtocolError(f"{what}: a signature must be an object")
            wire.only(raw, what, {"keyid", "sig"})
            kid = wire.req_str(raw, "keyid", what, max_len=64, pattern=r"[0-9a-f]{64}")
            try:
                sig = base64.b64decode(wire.req_str(raw, "sig", what, max_len=256), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ProtocolError(f"{what}: a signature is not base64") from exc
            signatures.append((kid, sig))
        return cls(payload_type, payload, tuple(signatures))


def sign(payload_type: str, body: bytes, keys: Iterable[ec.EllipticCurvePrivateKey]) -> Envelope:
    """Sign ``body`` with every key (the gateway passes all active signing keys)."""
    message = pae(payload_type, body)
    signatures = tuple(
        (key_id(k.public_key()), k.sign(message, ec.ECDSA(hashes.SHA256()))) for k in keys
    )
    if not signatures:
        raise ProtocolError("no signing key")
    return Envelope(payload_type, body, signatures)


def verify(envelope: Envelope, payload_type: str, trusted: TrustedKeys) -> bytes:
    """The payload bytes, if a trusted key signed them under ``payload_type``; else raise."""
    if envelope.payload_type != payload_type:
        raise SignatureInvalidError(
            f"envelope carries {envelope.payload_type!r}, expected {payload_type!r}"
        )
    message = pae(envelope.payload_type, envelope.payload)
    for kid, sig in envelope.signatures:
        key = trusted.keys.get(kid)
        if key is None:
            continue
        try:
            key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return envelope.payload
    raise SignatureInvalidError("no signature by a trusted key verifies")
