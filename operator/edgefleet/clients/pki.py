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

The in-memory parts (:class:`GatewayPki`, :class:`ServerTls`, :func:`ephemeral`) live
in :mod:`edgefleet.clients.pki_bundle` and are re-exported here: import this module.
The image-signing *private* key (Secret ``edgefleet-signing-key``) is never read here.
Malformed material raises :class:`~edgefleet.domain.pki.PkiError` naming the Secret and
the key; the ``edgefleet gateway`` command exits with code 2 on it.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client

from edgefleet.clients import pki_store as store
from edgefleet.clients.pki_bundle import CaSet, GatewayPki, ServerTls, ephemeral
from edgefleet.clients.pki_store import PkiNotReadyError, StoredObject
from edgefleet.domain import pki
from edgefleet.domain.pki import KeyPair, PkiError
from edgefleet_node.protocol import dsse, enroll, wire

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
            stored.need("tls.crt"),
            stored.need("tls.key"),
            stored.where,
            ca=False,
            now=now,
            check_validity=not stored.generated,  # an expired generated one is re-issued
        )
        reason = _reissue_reason(pair, names, gateway_ca, now)
        if reason == "close to expiry" and store.ROTATION_STARTED in gateway_ca.stored.annotations:
            # One from the new CA would lock out devices that have not learnt it yet.
            log.warning(
                "serving certificate renewal waits for the gateway-CA rotation",
                namespace=namespace,
                not_after=pair.cert.not_valid_after_utc.isoformat(),
            )
            return pair
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
    if pair.cert.not_valid_after_utc <= now:
        return "expired"
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
