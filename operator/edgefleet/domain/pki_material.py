"""The gateway's X.509 material, pure: key pairs, PEM helpers, and checks.

- :class:`KeyPair`, :func:`generate_key`, PEM encoders, :func:`serial_hex`.
- :func:`load_keypair`, :func:`load_cert_bundle`, :func:`load_signing_key`: parse
  material a user supplied, with errors that say what is wrong and where (wrong key
  type, certificate/key mismatch, not a CA, expired).
- :func:`verify_client_cert`: the per-request check of a device certificate against
  the trusted device CAs (TLS already did it once; a resumed session or a CA dropped
  at the end of a rotation must not keep a certificate alive); :func:`issued_by`,
  :func:`cert_identity`, :func:`covers`.

:mod:`edgefleet.domain.pki` issues certificates and re-exports all of this.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "BACKDATE",
    "KeyPair",
    "PkiError",
    "cert_identity",
    "certs_pem",
    "covers",
    "generate_key",
    "is_ip",
    "issued_by",
    "key_pem",
    "load_cert_bundle",
    "load_keypair",
    "load_signing_key",
    "now_or",
    "public_pem",
    "serial_hex",
    "verify_client_cert",
]

#: Certificates start this much before they are made: device clocks run a little behind.
BACKDATE = datetime.timedelta(minutes=5)


class PkiError(ValueError):
    """Material that cannot be used; the message says which and why."""


def now_or(now: datetime.datetime | None) -> datetime.datetime:
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


def covers(cert: x509.Certificate, names: Sequence[str]) -> bool:
    """Whether ``cert``'s subject alternative names include every one of ``names``."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = set(san.get_values_for_type(x509.DNSName))
    have |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    wanted = {str(ipaddress.ip_address(n)) if is_ip(n) else n for n in names}
    return wanted <= have


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


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
    if cert.not_valid_before_utc > now + BACKDATE:
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
    check_validity: bool = True,
) -> KeyPair:
    """A certificate (chain) and its key as a user supplied them, checked: the key is
    P-256 and belongs to the first certificate, which is a CA when ``ca`` and (unless
    ``check_validity`` is false) is valid now. ``what`` names the Secret in every error."""
    certs = _load_certs(cert_pem, f"{what} tls.crt")
    key = load_signing_key(key_pem_bytes, f"{what} tls.key")
    leaf = certs[0]
    if public_pem(leaf.public_key()) != public_pem(key):  # type: ignore[arg-type]
        raise PkiError(f"{what}: tls.key does not belong to the certificate in tls.crt")
    if ca and not _is_ca(leaf):
        raise PkiError(f"{what}: tls.crt is not a CA certificate (basicConstraints CA:TRUE)")
    if check_validity:
        _check_validity(leaf, f"{what}: tls.crt", now_or(now))
    return KeyPair(leaf, key, tuple(certs[1:]))


def load_cert_bundle(
    pem: bytes, what: str, *, now: datetime.datetime | None = None
) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """The CA certificates of a ``trusted.crt`` bundle, as (usable, expired); raise when
    one is not a CA or none is usable."""
    usable: list[x509.Certificate] = []
    expired: list[x509.Certificate] = []
    moment = now_or(now)
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
    moment = now_or(now)
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
