"""The gateway's PKI, loaded from Secrets (generated when absent, honoured when supplied).

:func:`load_or_create` reads (or first generates) the device CA, the gateway CA, the
serving certificate for the gateway's names and the document-signing key(s), and the
image-signing public key(s) the operator publishes; it returns a :class:`GatewayPki`:

- :meth:`GatewayPki.server_context`: TLS >= 1.2, the serving certificate, client
  certificates optional at the TLS layer (enrolment has none) and verified against every
  trusted device CA when sent; :class:`ServerTls` swaps the PKI under a running server;
- :meth:`GatewayPki.issue`: a device certificate from a CSR;
- :meth:`GatewayPki.verify_client`: the per-request check of a device certificate
  (resumed TLS sessions and a CA dropped at the end of a rotation are covered);
- :meth:`GatewayPki.trust_bundle` / :meth:`GatewayPki.signed_trust_bundle`: what
  devices trust, with a serial that grows with every rotation step.

The image-signing *private* key (Secret ``edgefleet-signing-key``) is never read here.
Malformed material raises :class:`~edgefleet.domain.pki.PkiError` naming the Secret and
the key; the ``edgefleet gateway`` command exits with code 2 on it.
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client

from edgefleet.clients import pki_store as store
from edgefleet.clients.pki_store import PkiNotReadyError, StoredObject
from edgefleet.domain import pki
from edgefleet.domain.pki import KeyPair, PkiError
from edgefleet_node.protocol import dsse, enroll, wire
from edgefleet_node.protocol.desired import TrustBundle

__all__ = [
    "CaSet",
    "GatewayPki",
    "PkiError",
    "PkiNotReadyError",
    "ServerTls",
    "ephemeral",
    "gateway_pin",
    "load_ca",
    "load_or_create",
]

log = structlog.get_logger("edgefleet.pki")

#: A generated serving certificate is re-issued when less than this share of its life is left.
_RENEW_SHARE = 1 / 3


@dataclass(frozen=True)
class CaSet:
    """A CA that issues (``current``) and every CA still trusted (``current`` included)."""

    current: KeyPair
    trusted: tuple[x509.Certificate, ...]
    stored: StoredObject = field(repr=False, compare=False)


def _core(api: Any) -> client.CoreV1Api:
    return api if isinstance(api, client.CoreV1Api) else client.CoreV1Api(api)


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else datetime.datetime.now(datetime.UTC)


def load_ca(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    common_name: str,
    *,
    create: bool = True,
    now: datetime.datetime | None = None,
) -> CaSet:
    """The CA in Secret ``namespace/name``, generated (when ``create``) if absent."""
    stored = store.read_secret(core, namespace, name)
    if stored is None:
        if not create:
            raise PkiNotReadyError(f"Secret {namespace}/{name} does not exist yet")
        ca = pki.make_ca(common_name, now=now)
        stored = store.create(
            core,
            StoredObject(
                "Secret",
                namespace,
                name,
                {"tls.crt": ca.cert_pem, "tls.key": ca.key_pem},
                {store.GENERATED: "true"},
                object_type="kubernetes.io/tls",
            ),
        )
        log.info("generated CA", namespace=namespace, name=name)
    where = stored.where
    current = pki.load_keypair(
        stored.need("tls.crt"), stored.need("tls.key"), where, ca=True, now=now
    )
    trusted: list[x509.Certificate] = [current.cert]
    bundle = stored.get("trusted.crt")
    if bundle:
        usable, expired = pki.load_cert_bundle(bundle, f"{where} trusted.crt", now=now)
        for cert in expired:
            log.warning(
                "trusted CA expired",
                namespace=namespace,
                name=name,
                subject=cert.subject.rfc4514_string(),
            )
        trusted += [c for c in usable if c != current.cert]
    return CaSet(current, tuple(trusted), stored)


def _load_serving(
    core: client.CoreV1Api,
    namespace: str,
    names: Sequence[str],
    gateway_ca: CaSet,
    now: datetime.datetime,
) -> KeyPair:
    stored = store.read_secret(core, namespace, store.GATEWAY_TLS)
    for _ in range(3):
        if stored is None:
            fresh = pki.issue_server_cert(gateway_ca.current, names, now=now)
            stored = store.create(core, _serving_object(namespace, fresh, None))
            log.info("issued serving certificate", namespace=namespace, names=list(names))
        pair = pki.load_keypair(
            stored.need("tls.crt"), stored.need("tls.key"), stored.where, ca=False, now=now
        )
        reason = _reissue_reason(pair, names, gateway_ca, now)
        if reason is None:
            return pair
        if not stored.generated:
            if reason == "not issued by a trusted gateway CA":
                raise PkiError(
                    f"{stored.where}: the serving certificate was {reason} (Secret "
                    f"{namespace}/{store.GATEWAY_CA} trusted.crt / tls.crt)"
                )
            log.warning("supplied serving certificate used as is", namespace=namespace,
                        name=store.GATEWAY_TLS, problem=reason)  # fmt: skip
            return pair
        fresh = pki.issue_server_cert(gateway_ca.current, names, now=now)
        try:
            stored = store.replace(core, _serving_object(namespace, fresh, stored))
            log.info("re-issued serving certificate", namespace=namespace, reason=reason)
        except store.ConflictError:
            stored = store.read_secret(core, namespace, store.GATEWAY_TLS)
    raise PkiNotReadyError(f"Secret {namespace}/{store.GATEWAY_TLS} keeps changing; retry")


def _serving_object(namespace: str, pair: KeyPair, old: StoredObject | None) -> StoredObject:
    return StoredObject(
        "Secret",
        namespace,
        store.GATEWAY_TLS,
        {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem},
        {**(old.annotations if old else {}), store.GENERATED: "true"},
        old.resource_version if old else None,
        "kubernetes.io/tls",
    )


def _reissue_reason(
    pair: KeyPair, names: Sequence[str], gateway_ca: CaSet, now: datetime.datetime
) -> str | None:
    if not any(pki.issued_by(pair.cert, ca) for ca in gateway_ca.trusted):
        return "not issued by a trusted gateway CA"
    if names and not pki.covers(pair.cert, names):
        return "not valid for every name in EDGEFLEET_GATEWAY_NAMES"
    life = pair.cert.not_valid_after_utc - pair.cert.not_valid_before_utc
    if pair.cert.not_valid_after_utc - now < life * _RENEW_SHARE:
        return "close to expiry"
    return None


def _document_keys(
    core: client.CoreV1Api, namespace: str
) -> tuple[tuple[ec.EllipticCurvePrivateKey, ...], StoredObject]:
    stored = store.read_secret(core, namespace, store.DOCUMENT_KEY)
    if stored is None:
        key = pki.generate_key()
        stored = store.create(
            core,
            StoredObject(
                "Secret",
                namespace,
                store.DOCUMENT_KEY,
                {"document.key": pki.key_pem(key)},
                {store.GENERATED: "true"},
            ),
        )
        log.info("generated document-signing key", namespace=namespace)
    keys = [pki.load_signing_key(stored.need("document.key"), f"{stored.where} document.key")]
    previous = stored.get("previous.key")
    if previous:
        keys.append(pki.load_signing_key(previous, f"{stored.where} previous.key"))
    return tuple(keys), stored


def _image_keys(core: client.CoreV1Api, namespace: str) -> tuple[tuple[bytes, ...], StoredObject]:
    stored = store.read_configmap(core, namespace, store.IMAGE_KEYS)
    if stored is None or not stored.get("cosign.pub"):
        raise PkiNotReadyError(
            f"ConfigMap {namespace}/{store.IMAGE_KEYS} (cosign.pub) does not exist yet: the "
            "operator publishes it when it starts"
        )
    pems: list[bytes] = []
    for block in stored.need("cosign.pub").split(b"-----END PUBLIC KEY-----"):
        if block.strip():
            pems.append(block.strip() + b"\n-----END PUBLIC KEY-----\n")
    try:
        dsse.TrustedKeys.from_pems(pems)
    except wire.ProtocolError as exc:
        raise PkiError(f"{stored.where} cosign.pub: {exc}") from exc
    return tuple(pems), stored


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


def load_or_create(
    api: Any,
    namespace: str,
    names: Sequence[str],
    *,
    device_cert_lifetime: datetime.timedelta = pki.DEVICE_CERT_LIFETIME,
    now: datetime.datetime | None = None,
) -> GatewayPki:
    """The gateway PKI from the Secrets in ``namespace``; generate what is absent.

    ``api`` is a ``kubernetes.client.ApiClient`` or ``CoreV1Api``; ``names`` the DNS
    names and IPs of the serving certificate (``EDGEFLEET_GATEWAY_NAMES``). Blocking:
    call it from a thread in async code.
    """
    core = _core(api)
    moment = _now(now)
    device_ca = load_ca(core, namespace, store.DEVICE_CA, "edgefleet device CA", now=moment)
    gateway_ca = load_ca(core, namespace, store.GATEWAY_CA, "edgefleet gateway CA", now=moment)
    serving = _load_serving(core, namespace, names, gateway_ca, moment)
    document_keys, document_stored = _document_keys(core, namespace)
    image_keys, image_stored = _image_keys(core, namespace)
    serial = 1 + sum(
        s.rotation_step
        for s in (device_ca.stored, gateway_ca.stored, document_stored, image_stored)
    )
    return GatewayPki(
        device_ca=device_ca,
        gateway_ca=gateway_ca,
        serving=serving,
        document_keys=document_keys,
        image_keys=image_keys,
        trust_serial=serial,
        device_cert_lifetime=device_cert_lifetime,
    )


def gateway_pin(api: Any, namespace: str) -> str:
    """The CA hash a bootstrap token pins: the issuer of the current serving certificate
    (generating the gateway CA when nothing exists yet: the gateway will issue its
    serving certificate from it)."""
    core = _core(api)
    gateway_ca = load_ca(core, namespace, store.GATEWAY_CA, "edgefleet gateway CA")
    stored = store.read_secret(core, namespace, store.GATEWAY_TLS)
    if stored is not None:
        try:
            serving = x509.load_pem_x509_certificates(stored.need("tls.crt"))[0]
        except ValueError as exc:
            raise PkiError(f"{stored.where} tls.crt is not a PEM certificate: {exc}") from exc
        for ca in gateway_ca.trusted:
            if pki.issued_by(serving, ca):
                return enroll.ca_hash(ca)
    return enroll.ca_hash(gateway_ca.current.cert)


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
