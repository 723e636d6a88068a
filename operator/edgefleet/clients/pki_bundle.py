"""The gateway's PKI in memory: what it serves, issues, verifies and signs with.

:class:`GatewayPki` holds the device CA(s), the gateway CA(s), the serving certificate,
the document-signing key(s) and the image-signing public key(s); :mod:`edgefleet.clients.pki`
loads it from Secrets (and re-exports everything here). :class:`ServerTls` lets a
running server switch to a new :class:`GatewayPki` after a rotation;
:func:`ephemeral` makes one that is never stored, for tests and benchmarks.
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.clients.pki_store import StoredObject
from edgefleet.domain import pki
from edgefleet.domain.pki import KeyPair, PkiError
from edgefleet_node.protocol import dsse, enroll, wire
from edgefleet_node.protocol.desired import TrustBundle

__all__ = ["CaSet", "GatewayPki", "ServerTls", "ephemeral"]


@dataclass(frozen=True)
class CaSet:
    """A CA that issues (``current``) and every CA still trusted (``current`` included)."""

    current: KeyPair
    trusted: tuple[x509.Certificate, ...]
    stored: StoredObject = field(repr=False, compare=False)


class GatewayPki:
    """Everything the gateway holds to speak TLS, issue certificates and sign."""

    def __init__(
        self,
        *,
        device_ca: CaSet,
        gateway_ca: CaSet,
        serving: KeyPair,
        document_keys: tuple[ec.EllipticCurvePrivateKey, ...],
        image_keys: tuple[bytes, ...],
        trust_serial: int,
        device_cert_lifetime: datetime.timedelta = pki.DEVICE_CERT_LIFETIME,
    ) -> None:
        self.device_ca = device_ca
        self.gateway_ca = gateway_ca
        self.serving = serving
        self.document_keys = document_keys
        self.image_keys = image_keys
        self.trust_serial = trust_serial
        self.device_cert_lifetime = device_cert_lifetime
        self._signed_trust: dsse.Envelope | None = None

    def __repr__(self) -> str:
        return f"GatewayPki(trust_serial={self.trust_serial})"

    def server_context(self) -> ssl.SSLContext:
        """A fresh server context: TLS >= 1.2, client certificates optional at the TLS
        layer and, when sent, verified against every trusted device CA."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cadata=pki.certs_pem(self.device_ca.trusted).decode("ascii"))
        with tempfile.TemporaryDirectory(prefix="edgefleet-tls-") as tmp:
            cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            cert.write_bytes(self.serving.cert_pem)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self.serving.key_pem)
            ctx.load_cert_chain(cert, key)
        return ctx

    def issue(
        self,
        csr_pem: bytes,
        *,
        namespace: str,
        device: str,
        lifetime: datetime.timedelta | None = None,
        now: datetime.datetime | None = None,
    ) -> x509.Certificate:
        """A device certificate from the current device CA (see
        :func:`edgefleet.domain.pki.issue_device_cert` for what it checks)."""
        return pki.issue_device_cert(
            self.device_ca.current,
            csr_pem,
            namespace=namespace,
            device=device,
            lifetime=lifetime or self.device_cert_lifetime,
            now=now,
        )

    def verify_client(
        self, der: bytes, *, now: datetime.datetime | None = None
    ) -> tuple[x509.Certificate, str, str]:
        """The device certificate (DER, as TLS gives it), its namespace and name, if a
        trusted device CA issued it and it is valid now; else raise ``PkiError``."""
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise PkiError(f"the client certificate does not parse: {exc}") from exc
        namespace, device = pki.verify_client_cert(cert, self.device_ca.trusted, now=now)
        return cert, namespace, device

    def gateway_ca_bundle(self) -> bytes:
        """PEM of every gateway CA devices should trust (served at the CA path)."""
        return pki.certs_pem(self.gateway_ca.trusted)

    def serving_ca_hash(self) -> str:
        """The pin a bootstrap token carries: the CA that issued the serving certificate."""
        for ca in self.gateway_ca.trusted:
            if pki.issued_by(self.serving.cert, ca):
                return enroll.ca_hash(ca)
        return enroll.ca_hash(self.gateway_ca.current.cert)

    def signing_key_pems(self) -> tuple[bytes, ...]:
        return tuple(pki.public_pem(k) for k in self.document_keys)

    def trust_bundle(self) -> TrustBundle:
        return TrustBundle(
            serial=self.trust_serial,
            gateway_cas=tuple(
                c.public_bytes(serialization.Encoding.PEM) for c in self.gateway_ca.trusted
            ),
            signing_keys=self.signing_key_pems(),
            image_keys=self.image_keys,
        )

    def signed_trust_bundle(self) -> dsse.Envelope:
        """The trust bundle signed by every document key (cached; it is the same for all)."""
        if self._signed_trust is None:
            self._signed_trust = self.trust_bundle().sign(self.document_keys)
        return self._signed_trust

    def enroll_response(self, cert: x509.Certificate) -> enroll.EnrollResponse:
        namespace, device = pki.cert_identity(cert)
        return enroll.EnrollResponse(
            namespace=namespace,
            device=device,
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
            gateway_cas=self.trust_bundle().gateway_cas,
            signing_keys=self.signing_key_pems(),
            image_keys=self.image_keys,
            not_after=wire.format_time(cert.not_valid_after_utc),
        )


def ephemeral(names: Sequence[str], image_keys: Sequence[bytes]) -> GatewayPki:
    """A PKI made in memory and never stored: for tests and benchmarks only."""
    sets = []
    for what in ("device", "gateway"):
        ca = pki.make_ca(f"edgefleet {what} CA (ephemeral)")
        sets.append(CaSet(ca, (ca.cert,), StoredObject("Secret", "", what, {})))
    return GatewayPki(
        device_ca=sets[0],
        gateway_ca=sets[1],
        serving=pki.issue_server_cert(sets[1].current, names),
        document_keys=(pki.generate_key(),),
        image_keys=tuple(image_keys),
        trust_serial=1,
    )


class ServerTls:
    """One server ``SSLContext`` whose PKI can be swapped while the server runs.

    Give :attr:`context` to the server once; :meth:`update` makes every new handshake
    use the new PKI's context (serving certificate and trusted device CAs) through the
    SNI callback, which OpenSSL calls on every ClientHello, with or without SNI.
    """

    def __init__(self, initial: GatewayPki) -> None:
        self._current = initial.server_context()
        self.pki = initial
        self.context = initial.server_context()
        self.context.sni_callback = self._select

    def _select(self, sock: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.context = self._current

    def update(self, new: GatewayPki) -> None:
        self._current = new.server_context()
        self.pki = new
