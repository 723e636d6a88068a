"""Two-phase rotation of the gateway's trust roots, with overlap (``edgefleet pki rotate``).

Every step bumps the ``edgefleet.io/rotation-step`` annotation of the object it changes,
so the trust bundle's serial (their sum) grows and devices adopt the new bundle.

==================  ==========================================  ===========================
target              begin                                       ``--finish``
==================  ==========================================  ===========================
``device-ca``       new CA issues; old and new CAs are trusted  only the new CA is trusted
``gateway-ca``      new CA in the bundle devices trust; the     serving cert re-issued by
                    serving cert stays (old CA)                 the new CA; old CA dropped
``document-key``    new key in ``document.key``, the old one    ``previous.key`` dropped
                    in ``previous.key``; both sign
``serving-cert``    re-issued now by the current gateway CA     (single step)
==================  ==========================================  ===========================

``--finish`` refuses before the overlap has lasted ``min_overlap`` (devices must have
renewed their certificates, or fetched the new trust bundle) unless forced. Running
gateways pick the change up when they reload the PKI. ``docs/rotation.md`` is the
operator's guide.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import replace as dc_replace

from cryptography import x509
from kubernetes import client

from edgefleet.clients import pki_store as store
from edgefleet.clients.pki import load_ca
from edgefleet.clients.pki_store import StoredObject
from edgefleet.domain import pki
from edgefleet.domain.pki import PkiError
from edgefleet_node.protocol import wire

__all__ = ["DEFAULT_OVERLAP", "TARGETS", "RotationError", "rotate"]

TARGETS = ("device-ca", "gateway-ca", "document-key", "serving-cert")
DEFAULT_OVERLAP = {
    "device-ca": pki.DEVICE_CERT_LIFETIME,  # every device has renewed from the new CA
    "gateway-ca": datetime.timedelta(days=1),  # every device has polled the new bundle
    "document-key": datetime.timedelta(days=1),
}
_COMMON_NAMES = {"device-ca": "edgefleet device CA", "gateway-ca": "edgefleet gateway CA"}
_SECRETS = {"device-ca": store.DEVICE_CA, "gateway-ca": store.GATEWAY_CA}


class RotationError(PkiError):
    """The rotation step cannot be taken now; the message says why and what to do."""


def _stamp(obj: StoredObject, now: datetime.datetime, *, begin: bool) -> dict[str, str]:
    return store.annotated(
        obj,
        {
            store.ROTATION_STEP: str(obj.rotation_step + 1),
            store.ROTATION_STARTED: wire.format_time(now) if begin else None,
        },
    )


def _check_begin(obj: StoredObject) -> None:
    started = obj.annotations.get(store.ROTATION_STARTED)
    if started:
        raise RotationError(
            f"{obj.where}: a rotation began at {started} and is not finished; "
            "finish it first (--finish)"
        )


def _check_finish(
    obj: StoredObject, now: datetime.datetime, overlap: datetime.timedelta, force: bool
) -> None:
    started = obj.annotations.get(store.ROTATION_STARTED)
    if not started:
        raise RotationError(f"{obj.where}: no rotation is in progress")
    ready = wire.parse_time(started, obj.where) + overlap
    if now < ready and not force:
        raise RotationError(
            f"{obj.where}: the rotation began at {started}; finishing before "
            f"{wire.format_time(ready)} can lock out devices that have not caught up "
            "(--force to finish anyway)"
        )


def _write(core: client.CoreV1Api, obj: StoredObject) -> None:
    try:
        store.replace(core, obj)
    except store.ConflictError as exc:
        raise RotationError(f"{exc}; run the command again") from exc


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = list(
        san.get_values_for_type(x509.IPAddress)  # type: ignore[arg-type]
    )
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in ips)]


def _reissue_serving(
    core: client.CoreV1Api, namespace: str, ca: pki.KeyPair, now: datetime.datetime
) -> str:
    """Re-issue a generated serving certificate from ``ca`` for the names it has."""
    stored = store.read_secret(core, namespace, store.GATEWAY_TLS)
    if stored is None:
        return "no serving certificate yet; the gateway issues one from the current CA"
    try:
        cert = x509.load_pem_x509_certificates(stored.need("tls.crt"))[0]
    except ValueError as exc:
        raise PkiError(f"{stored.where} tls.crt is not a PEM certificate: {exc}") from exc
    if not stored.generated:
        if pki.issued_by(cert, ca.cert):
            return f"{stored.where} is yours and already issued by the current gateway CA"
        raise RotationError(
            f"{stored.where} was supplied by you and is not issued by the current gateway CA: "
            "replace it with one that CA issued, then run the command again"
        )
    fresh = pki.issue_server_cert(ca, _san_names(cert), now=now)
    _write(
        core,
        dc_replace(stored, data={"tls.crt": fresh.cert_pem, "tls.key": fresh.key_pem}),
    )
    return f"serving certificate re-issued (serial {pki.serial_hex(fresh.cert)})"


def _rotate_ca(
    core: client.CoreV1Api,
    namespace: str,
    target: str,
    *,
    finish: bool,
    force: bool,
    overlap: datetime.timedelta,
    now: datetime.datetime,
) -> str:
    cas = load_ca(core, namespace, _SECRETS[target], _COMMON_NAMES[target], create=False, now=now)
    obj = cas.stored
    if not finish:
        _check_begin(obj)
        new = pki.make_ca(_COMMON_NAMES[target], now=now)
        trusted = pki.certs_pem((new.cert, *cas.trusted))
        data = {**obj.data, "tls.crt": new.cert_pem, "tls.key": new.key_pem}
        data["trusted.crt"] = trusted
        _write(core, dc_replace(obj, data=data, annotations=_stamp(obj, now, begin=True)))
        after = "devices renew from it" if target == "device-ca" else "devices fetch it"
        return (
            f"{target}: new CA {pki.serial_hex(new.cert)} is in place, old and new are trusted; "
            f"run --finish after {wire.format_time(now + overlap)} once {after}"
        )
    _check_finish(obj, now, overlap, force)
    note = ""
    if target == "gateway-ca":
        note = "; " + _reissue_serving(core, namespace, cas.current, now)
    data = {k: v for k, v in obj.data.items() if k != "trusted.crt"}
    _write(core, dc_replace(obj, data=data, annotations=_stamp(obj, now, begin=False)))
    return (
        f"{target}: rotation finished, only CA {pki.serial_hex(cas.current.cert)} is trusted{note}"
    )


def _rotate_document_key(
    core: client.CoreV1Api,
    namespace: str,
    *,
    finish: bool,
    force: bool,
    overlap: datetime.timedelta,
    now: datetime.datetime,
) -> str:
    obj = store.read_secret(core, namespace, store.DOCUMENT_KEY)
    if obj is None:
        raise RotationError(f"Secret {namespace}/{store.DOCUMENT_KEY} does not exist yet")
    current = pki.load_signing_key(obj.need("document.key"), f"{obj.where} document.key")
    if not finish:
        _check_begin(obj)
        new = pki.generate_key()
        data = {**obj.data, "document.key": pki.key_pem(new), "previous.key": pki.key_pem(current)}
        _write(core, dc_replace(obj, data=data, annotations=_stamp(obj, now, begin=True)))
        return (
            "document-key: a new key signs beside the old one; run --finish after "
            f"{wire.format_time(now + overlap)}"
        )
    _check_finish(obj, now, overlap, force)
    data = {k: v for k, v in obj.data.items() if k != "previous.key"}
    _write(core, dc_replace(obj, data=data, annotations=_stamp(obj, now, begin=False)))
    return "document-key: rotation finished, only the new key signs"


def rotate(
    api: client.ApiClient | client.CoreV1Api,
    namespace: str,
    target: str,
    *,
    finish: bool = False,
    force: bool = False,
    min_overlap: datetime.timedelta | None = None,
    now: datetime.datetime | None = None,
) -> str:
    """Take one rotation step on ``target`` in the gateway namespace; a line saying what
    happened and what comes next. Raise :class:`RotationError` (or ``PkiError`` for
    malformed material) when it cannot be taken."""
    if target not in TARGETS:
        raise RotationError(f"unknown rotation target {target!r} (one of {', '.join(TARGETS)})")
    core = api if isinstance(api, client.CoreV1Api) else client.CoreV1Api(api)
    moment = now or datetime.datetime.now(datetime.UTC)
    overlap = min_overlap if min_overlap is not None else DEFAULT_OVERLAP.get(target)
    if target == "serving-cert":
        cas = load_ca(core, namespace, store.GATEWAY_CA, "", create=False, now=moment)
        return "serving-cert: " + _reissue_serving(core, namespace, cas.current, moment)
    assert overlap is not None
    if target == "document-key":
        return _rotate_document_key(
            core, namespace, finish=finish, force=force, overlap=overlap, now=moment
        )
    return _rotate_ca(
        core, namespace, target, finish=finish, force=force, overlap=overlap, now=moment
    )
