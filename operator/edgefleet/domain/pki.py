"""The gateway's X.509 material, pure: CAs, the serving certificate, device certificates.

- :func:`make_ca`: a self-signed ECDSA P-256 CA (the device CA, the gateway CA).
- :func:`issue_server_cert`: the gateway's serving certificate for DNS names and IPs.
- :func:`issue_device_cert`: a short-lived client certificate from a device's CSR, whose
  subject must be ``CN=<device>, O=<namespace>`` (checked with
  :func:`edgefleet_node.protocol.enroll.csr_identity`); random serial, key usage
  ``digitalSignature``, extended key usage ``clientAuth``, not a CA.
- :func:`load_keypair`, :func:`load_cert_bundle`, :func:`load_signing_key`: parse
  material a user supplied, with errors that say what is wrong and where (wrong key
  type, certificate/key mismatch, not a CA, expired).
- :func:`verify_client_cert`: the per-request check of a device certificate against
  the trusted device CAs (TLS already did it once; a resumed session or a CA dropped
  at the end of a rotation must not keep a certificate alive).

Nothing here reads Secrets or files: :mod:`edgefleet.clients.pki` does.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgefleet_node.protocol import enroll
from edgefleet_node.protocol.wire import ProtocolError

__all__ = [
    "CA_LIFETIME",
    "DEVICE_CERT_LIFETIME",
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
_BACKDATE = datetime.timedelta(minutes=5)  # tolerate device clocks a little behind


class PkiError(ValueError):
    """Material that cannot be used; the message says which and why."""


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else datetime.datetime.now(datetime.UTC)


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (it lives in a Secret)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def certs_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def serial_hex(cert: x509.Certificate) -> str:
    """The serial as EdgeDevice.status.enrollment stores it: lower-case hex."""
    return format(cert.serial_number, "x")


@dataclass(frozen=True)
class KeyPair:
    """A certificate (with any chain after it) and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def cert_pem(self) -> bytes:
        """The certificate followed by its chain, as a ``tls.crt`` holds it."""
        return certs_pem((self.cert, *self.chain))

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)


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
    moment = _now(now)
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
        .not_valid_before(moment - _BACKDATE)
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
        .not_valid_before(now - _BACKDATE)
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
        _leaf(ca, subject, key.public_key(), lifetime, _now(now))
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(_key_usage(signature=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return KeyPair(cert, key, (ca.cert,))


def covers(cert: x509.Certificate, names: Sequence[str]) -> bool:
    """Whether ``cert``'s subject alternative names include every one of ``names``."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = set(san.get_values_for_type(x509.DNSName))
    have |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    wanted = {str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in names}
    return wanted <= have


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


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
        _leaf(ca, csr.subject, public, lifetime, _now(now))
        .add_extension(_key_usage(signature=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )


def cert_identity(cert: x509.Certificate) -> tuple[str, str]:
    """(namespace, device) from a device certificate's subject; raise
    :class:`PkiError` unless it is exactly ``CN=<device>, O=<namespace>``."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if len(cert.subject) != 2 or len(cn) != 1 or len(org) != 1:
        raise PkiError("a device certificate's subject must be exactly CN=<device>, O=<namespace>")
    return str(org[0].value), str(cn[0].value)


def _check_validity(cert: x509.Certificate, what: str, now: datetime.datetime) -> None:
    if cert.not_valid_after_utc <= now:
        raise PkiError(f"{what} expired at {cert.not_valid_after_utc.isoformat()}")
    if cert.not_valid_before_utc > now + _BACKDATE:
        raise PkiError(f"{what} is not valid before {cert.not_valid_before_utc.isoformat()}")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return bool(usage.key_cert_sign)


def _load_certs(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise PkiError(f"{what} is not a PEM certificate (bundle): {exc}") from exc
    return certs


def load_signing_key(pem: bytes, what: str) -> ec.EllipticCurvePrivateKey:
    """An unencrypted PEM (PKCS#8 or SEC1) ECDSA P-256 private key."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{what} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PkiError(f"{what} must be an ECDSA P-256 key, not {type(key).__name__}")
    return key


def load_keypair(
    cert_pem: bytes,
    key_pem_bytes: bytes,
    what: str,
    *,
    ca: bool,
    now: datetime.datetime | None = None,
) -> KeyPair:
    """A certificate (chain) and its key as a user supplied them, checked: the key is
    P-256 and belongs to the first certificate, which is a CA when ``ca`` and is valid
    now. ``what`` names the Secret in every error."""
    certs = _load_certs(cert_pem, f"{what} tls.crt")
    key = load_signing_key(key_pem_bytes, f"{what} tls.key")
    leaf = certs[0]
    if public_pem(leaf.public_key()) != public_pem(key):  # type: ignore[arg-type]
        raise PkiError(f"{what}: tls.key does not belong to the certificate in tls.crt")
    if ca and not _is_ca(leaf):
        raise PkiError(f"{what}: tls.crt is not a CA certificate (basicConstraints CA:TRUE)")
    _check_validity(leaf, f"{what}: tls.crt", _now(now))
    return KeyPair(leaf, key, tuple(certs[1:]))


def load_cert_bundle(
    pem: bytes, what: str, *, now: datetime.datetime | None = None
) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """The CA certificates of a ``trusted.crt`` bundle, as (usable, expired); raise when
    one is not a CA or none is usable."""
    usable: list[x509.Certificate] = []
    expired: list[x509.Certificate] = []
    moment = _now(now)
    for index, cert in enumerate(_load_certs(pem, what)):
        if not _is_ca(cert):
            raise PkiError(f"{what}: certificate {index} is not a CA certificate")
        (expired if cert.not_valid_after_utc <= moment else usable).append(cert)
    if not usable:
        raise PkiError(f"{what}: no certificate in the bundle is still valid")
    return usable, expired


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` signed ``cert`` (subject match and a signature that verifies)."""
    if ca.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def verify_client_cert(
    cert: x509.Certificate,
    trusted_cas: Sequence[x509.Certificate],
    *,
    now: datetime.datetime | None = None,
) -> tuple[str, str]:
    """(namespace, device) of a device certificate issued by one of ``trusted_cas``,
    valid now, for client authentication; raise :class:`PkiError` otherwise."""
    moment = _now(now)
    _check_validity(cert, "the client certificate", moment)
    if not any(issued_by(cert, ca) for ca in trusted_cas):
        raise PkiError("the client certificate was not issued by a trusted device CA")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise PkiError("the client certificate is not for client authentication")
    return cert_identity(cert)
