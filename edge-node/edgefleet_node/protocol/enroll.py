"""Enrolment: bootstrap tokens, pinning the gateway's CA on first contact, enrol/renew.

A bootstrap token is one string a technician types once::

    ef1.<namespace>.<device>.<token-id>.<secret>.<ca-hash>

It names the EdgeDevice it is bound to, carries a random id (how the gateway finds the
token's record) and secret (stored by the gateway only as a SHA-256 hash), and the hex
SHA-256 of the gateway CA's SubjectPublicKeyInfo. On first contact the device fetches
the CA bundle from :data:`~edgefleet_node.protocol.wire.CA_PATH` over TLS it cannot yet
verify, keeps only the CA certificates whose key hash equals the pin, and from then on
verifies the gateway against those (kubeadm's ``--discovery-token-ca-cert-hash``). A
man in the middle can add certificates to that bundle but cannot make one match.

The device makes its key pair and a CSR whose subject is ``CN=<device>, O=<namespace>``;
its private key never leaves it. The gateway answers with a short-lived client
certificate, the gateway CA bundle, the keys that sign desired-state documents (held
by the gateway) and the keys that sign images (held by the operator). Two keys, not one:
a compromised gateway can sign documents but not images, so it can point a device only
at images the operator built and signed.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

from edgefleet_node.protocol import wire
from edgefleet_node.protocol.wire import ProtocolError

if TYPE_CHECKING:  # x509 is imported where it is used: an idle agent never needs it
    from cryptography import x509

__all__ = [
    "TOKEN_PREFIX",
    "BootstrapToken",
    "EnrollRequest",
    "EnrollResponse",
    "RenewRequest",
    "bundle",
    "ca_hash",
    "csr_identity",
    "pinned_cas",
]

TOKEN_PREFIX = "ef1"  # noqa: S105 -- a format marker, not a secret
_TOKEN = re.compile(
    r"ef1\.(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<name>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r"\.(?P<id>[0-9a-f]{16})\.(?P<secret>[A-Za-z0-9_-]{43})\.(?P<ca>[0-9a-f]{64})"
)
_MAX_PEM = 16 * 1024


@dataclass(frozen=True)
class BootstrapToken:
    namespace: str
    device: str
    token_id: str
    secret: str = field(repr=False)
    ca_hash: str

    @classmethod
    def generate(cls, namespace: str, device: str, ca_hash_hex: str) -> BootstrapToken:
        return cls(
            wire.check_name(namespace, "namespace"),
            wire.check_name(device, "device name"),
            secrets.token_hex(8),
            secrets.token_urlsafe(32),
            ca_hash_hex,
        )

    @classmethod
    def parse(cls, text: str) -> BootstrapToken:
        match = _TOKEN.fullmatch(text.strip())
        if match is None:
            # Never echo the token: it is a secret.
            raise ProtocolError(
                "the bootstrap token is malformed (expected ef1.<namespace>.<device>.<id>."
                "<secret>.<ca-hash>, as printed by `edgefleet token create`)"
            )
        return cls(match["ns"], match["name"], match["id"], match["secret"], match["ca"])

    def __str__(self) -> str:
        return ".".join(
            (TOKEN_PREFIX, self.namespace, self.device, self.token_id, self.secret, self.ca_hash)
        )

    def secret_hash(self) -> str:
        """What the gateway stores (the secret is 256 random bits: a plain hash suffices)."""
        return wire.sha256_hex(self.secret.encode("ascii"))


def ca_hash(cert: x509.Certificate) -> str:
    """Hex SHA-256 of a certificate's SubjectPublicKeyInfo (survives re-issuing the CA
    certificate with the same key)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return wire.sha256_hex(spki)


def _load_pems(pem_bundle: bytes, what: str) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(pem_bundle)
    except ValueError as exc:
        raise ProtocolError(f"{what} is not a PEM certificate bundle: {exc}") from exc
    return certs


def pinned_cas(bundle: bytes, pin: str) -> bytes:
    """The CA certificates of ``bundle`` whose key hash is ``pin``, as PEM; else raise."""
    kept = [c for c in _load_pems(bundle, "the gateway's CA bundle") if ca_hash(c) == pin]
    if not kept:
        raise ProtocolError(
            "no certificate in the gateway's CA bundle matches the hash in the token: this is "
            "not the gateway the token was made for (or someone is in between)"
        )
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in kept)


def csr_identity(csr_pem: bytes) -> tuple[x509.CertificateSigningRequest, str, str]:
    """Parse a CSR, check its self-signature; return it with its (namespace, device)."""
    if len(csr_pem) > _MAX_PEM:
        raise ProtocolError("the CSR is too large")
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise ProtocolError(f"the CSR is not a PEM certificate request: {exc}") from exc
    if not csr.is_signature_valid:
        raise ProtocolError("the CSR's signature does not verify")

    def one(oid: x509.ObjectIdentifier, what: str) -> str:
        values = csr.subject.get_attributes_for_oid(oid)
        if len(values) != 1 or not isinstance(values[0].value, str):
            raise ProtocolError(f"the CSR subject must have exactly one {what}")
        return values[0].value

    if len(csr.subject) != 2:
        raise ProtocolError("the CSR subject must be exactly CN=<device>, O=<namespace>")
    name = wire.check_name(one(NameOID.COMMON_NAME, "CN"), "CSR CN")
    namespace = wire.check_name(one(NameOID.ORGANIZATION_NAME, "O"), "CSR O")
    return csr, namespace, name


def _pem_list(doc: Mapping[str, Any], key: str, what: str, max_len: int = 8) -> list[bytes]:
    items = wire.req_list(doc, key, what, max_len=max_len)
    if not items or not all(isinstance(p, str) and 0 < len(p) <= _MAX_PEM for p in items):
        raise ProtocolError(f"{what}: {key!r} must be a non-empty list of PEM strings")
    return [p.encode("ascii") for p in items]


@dataclass(frozen=True)
class EnrollRequest:
    token: BootstrapToken
    csr_pem: bytes
    platform: str
    instance_id: str
    facts: Mapping[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return wire.canonical(
            {
                "token": str(self.token),
                "csr": self.csr_pem.decode("ascii"),
                "platform": self.platform,
                "instanceId": self.instance_id,
                "facts": dict(self.facts),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> EnrollRequest:
        what = "enrol request"
        doc = wire.load(data, what, wire.MAX_ENROLL_BODY)
        wire.only(doc, what, {"token", "csr", "platform", "instanceId", "facts"})
        token = BootstrapToken.parse(wire.req_str(doc, "token", what, max_len=256))
        csr = wire.req_str(doc, "csr", what, max_len=_MAX_PEM).encode("ascii")
        platform = wire.req_str(doc, "platform", what, max_len=32, pattern=r"linux/[a-z0-9/]+")
        instance = wire.req_str(doc, "instanceId", what, max_len=64, pattern=r"[0-9a-f]{32}")
        facts = doc.get("facts") or {}
        if not isinstance(facts, dict):
            raise ProtocolError(f"{what}: 'facts' must be an object")
        return cls(token, csr, platform, instance, facts)


@dataclass(frozen=True)
class RenewRequest:
    csr_pem: bytes

    def to_bytes(self) -> bytes:
        return wire.canonical({"csr": self.csr_pem.decode("ascii")})

    @classmethod
    def from_bytes(cls, data: bytes) -> RenewRequest:
        what = "renew request"
        doc = wire.load(data, what, wire.MAX_ENROLL_BODY)
        wire.only(doc, what, {"csr"})
        return cls(wire.req_str(doc, "csr", what, max_len=_MAX_PEM).encode("ascii"))


@dataclass(frozen=True)
class EnrollResponse:
    """A certificate (enrol or renew), and the trust the device needs to use it."""

    namespace: str
    device: str
    certificate_pem: bytes  # the client certificate (leaf first, then any intermediates)
    gateway_cas: tuple[bytes, ...]  # PEM CA certificates that verify the gateway
    signing_keys: tuple[bytes, ...]  # PEM public keys that sign desired-state documents
    image_keys: tuple[bytes, ...]  # PEM public keys that sign images (cosign format)
    not_after: str  # RFC 3339

    def to_bytes(self) -> bytes:
        return wire.canonical(
            {
                "namespace": self.namespace,
                "device": self.device,
                "certificate": self.certificate_pem.decode("ascii"),
                "gatewayCAs": [p.decode("ascii") for p in self.gateway_cas],
                "signingKeys": [p.decode("ascii") for p in self.signing_keys],
                "imageKeys": [p.decode("ascii") for p in self.image_keys],
                "notAfter": self.not_after,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> EnrollResponse:
        what = "enrol response"
        doc = wire.load(data, what, wire.MAX_ENROLL_BODY)
        wire.only(
            doc,
            what,
            {
                "namespace",
                "device",
                "certificate",
                "gatewayCAs",
                "signingKeys",
                "imageKeys",
                "notAfter",
            },
        )
        response = cls(
            wire.check_name(wire.req_str(doc, "namespace", what, max_len=63), "namespace"),
            wire.check_name(wire.req_str(doc, "device", what, max_len=63), "device"),
            wire.req_str(doc, "certificate", what, max_len=_MAX_PEM).encode("ascii"),
            tuple(_pem_list(doc, "gatewayCAs", what)),
            tuple(_pem_list(doc, "signingKeys", what)),
            tuple(_pem_list(doc, "imageKeys", what)),
            wire.req_str(doc, "notAfter", what, max_len=64),
        )
        wire.parse_time(response.not_after, f"{what}: notAfter")
        _load_pems(response.certificate_pem, f"{what}: certificate")
        return response


def bundle(pems: Iterable[bytes]) -> bytes:
    """Join PEM blocks into one bundle file."""
    return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in pems)
