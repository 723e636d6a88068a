"""The gateway's X.509 material, pure: CAs, the serving certificate, device certificates.

- :func:`make_ca`: a self-signed ECDSA P-256 CA (the device CA, the gateway CA).
- :func:`issue_server_cert`: the gateway's serving certificate for DNS names and IPs.
- :func:`issue_device_cert`: a short-lived client certificate from a device's CSR, whose
  subject must be ``CN=<device>, O=<namespace>`` (checked with
  :func:`edgefleet_node.protocol.enroll.csr_identity`); random serial, key usage
  ``digitalSignature``, extended key usage ``clientAuth``, not a CA.
- Key pairs, PEM helpers, parsing and checking supplied material, and the per-request
  check of a device certificate live in :mod:`edgefleet.domain.pki_material`; they are
  re-exported here, so this module is the one to import.

Nothing here reads Secrets or files: :mod:`edgefleet.clients.pki` does.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgefleet.domain.pki_material import (
    BACKDATE,
    KeyPair,
    PkiError,
    cert_identity,
    certs_pem,
    covers,
    generate_key,
    issued_by,
    key_pem,
    load_cert_bundle,
    load_keypair,
    load_signing_key,
    now_or,
    public_pem,
    serial_hex,
    verify_client_cert,
)
from edgefleet_node.protocol import enroll
from edgefleet_node.protocol.wire import ProtocolError

__all__ = [
    "CA_LIFETIME",
    "DEVICE_CERT_LIFETIME",
    "MAX_DEVICE_CERT_LIFETIME",
    "SERVER_CERT_LIFETIME",
    "KeyPair",
    "PkiError",
    "cert_identity",
    "certs_pem",
    "covers",
    "generate_key",
    "issue_device_cert",
    "issue_server_cert",
    "issued_by",
    "key_pem",
    "load_cert_bundle",
    "load_keypair",
    "load_signing_key",
    "make_ca",
    "public_pem",
    "serial_hex",
    "verify_client_cert",
]

CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_CERT_LIFETIME = datetime.timedelta(days=365)
DEVICE_CERT_LIFETIME = datetime.timedelta(days=7)
MAX_DEVICE_CERT_LIFETIME = datetime.timedelta(days=366)


def _key_usage(*, signature: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    common_name: str,
    *,
    lifetime: datetime.timedelta = CA_LIFETIME,
    now: datetime.datetime | None = None,
) -> KeyPair:
    """A new self-signed P-256 CA that may issue leaf certificates only. Its common name
    ends with part of its serial, so the CAs of a rotation never share a subject."""
    key = generate_key()
    moment = now_or(now)
    serial = x509.random_serial_number()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} {format(serial, 'x')[:8]}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgefleet"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(moment - BACKDATE)
        .not_valid_after(moment + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signature=True, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def _leaf(
    ca: KeyPair,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    lifetime: datetime.timedelta,
    now: datetime.datetime,
) -> x509.CertificateBuilder:
    not_after = min(now + lifetime, ca.cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if not name or len(name) > 253 or any(c.isspace() for c in name):
                raise PkiError(f"{name!r} is neither an IP address nor a DNS name") from None
            result.append(x509.DNSName(name))
    return result


def issue_server_cert(
    ca: KeyPair,
    names: Sequence[str],
    *,
    lifetime: datetime.timedelta = SERVER_CERT_LIFETIME,
    now: datetime.datetime | None = None,
) -> KeyPair:
    """The gateway's serving certificate for ``names`` (DNS names and IP addresses)."""
    if not names:
        raise PkiError("the gateway serving certificate needs at least one DNS name or IP")
    key = generate_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    cert = (
        _leaf(ca, subject, key.public_key(), lifetime, now_or(now))
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(_key_usage(signature=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return KeyPair(cert, key, (ca.cert,))


def issue_device_cert(
    ca: KeyPair,
    csr_pem: bytes,
    *,
    namespace: str,
    device: str,
    lifetime: datetime.timedelta = DEVICE_CERT_LIFETIME,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """A client certificate for ``namespace/device`` from its CSR; raise
    :class:`~edgefleet_node.protocol.wire.ProtocolError` when the CSR is malformed or
    names another device, :class:`PkiError` for a lifetime out of range."""
    if not datetime.timedelta(minutes=10) <= lifetime <= MAX_DEVICE_CERT_LIFETIME:
        raise PkiError(f"device certificate lifetime {lifetime} is outside [10 minutes, 366 days]")
    csr, csr_namespace, csr_device = enroll.csr_identity(csr_pem)
    if (csr_namespace, csr_device) != (namespace, device):
        raise ProtocolError(
            f"the CSR names {csr_namespace}/{csr_device}, but the request is for "
            f"{namespace}/{device}"
        )
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(
        public.curve, ec.SECP256R1 | ec.SECP384R1
    ):
        raise ProtocolError("the CSR's key must be ECDSA P-256 or P-384")
    return (
        _leaf(ca, csr.subject, public, lifetime, now_or(now))
        .add_extension(_key_usage(signature=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
