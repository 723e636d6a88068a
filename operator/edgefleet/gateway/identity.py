"""The device behind a request: its client certificate, checked against the watch cache.

TLS already verified the certificate chain when one was sent (client certificates are
optional at the TLS layer because enrolment has none). Per request, the certificate is
verified again by the PKI (a resumed session, or a device CA dropped at the end of a
rotation, must not keep it alive), its subject ``CN=<device>, O=<namespace>`` names the
EdgeDevice, and :func:`edgefleet.domain.deviceaccess.refusal` decides from the cached
object (serial recorded at enrolment, not suspended, not revoked, not deleted). The
parsed certificate is memoised by its bytes; the decision never is.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from cryptography import x509

from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.clients.devicecache import DeviceCache, DeviceKey
from edgefleet.domain import deviceaccess
from edgefleet.gateway.admission import GatewayError

__all__ = ["DeviceIdentity", "Identifier", "PeerVerifier", "peer_der"]


class PeerVerifier(Protocol):
    def verify_client(
        self, der: bytes, *, now: datetime.datetime | None = None
    ) -> tuple[x509.Certificate, str, str]: ...


@dataclass(frozen=True)
class DeviceIdentity:
    namespace: str
    name: str
    serial: str  # hex, lower case

    @property
    def key(self) -> DeviceKey:
        return (self.namespace, self.name)


def peer_der(request: web.Request) -> bytes | None:
    transport = request.transport
    if transport is None:
        return None
    obj: Any = transport.get_extra_info("ssl_object")
    if not isinstance(obj, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = obj.getpeercert(binary_form=True)
    return der or None


class Identifier:
    """Turns a request into the device it speaks for, or a :class:`GatewayError`."""

    def __init__(self, pki: PeerVerifier, cache: DeviceCache, memo_size: int = 50000) -> None:
        self.pki = pki
        self._cache = cache
        self._memo: OrderedDict[bytes, tuple[DeviceIdentity, datetime.datetime]] = OrderedDict()
        self._memo_size = memo_size

    def reset(self, pki: PeerVerifier) -> None:
        """A new PKI (rotation): forget every memoised certificate."""
        self.pki = pki
        self._memo.clear()

    def certificate(self, request: web.Request) -> DeviceIdentity:
        der = peer_der(request)
        if der is None:
            raise GatewayError(
                401, "CertificateRequired", "this route needs the device's client certificate"
            )
        now = datetime.datetime.now(datetime.UTC)
        digest = hashlib.sha256(der).digest()
        memo = self._memo.get(digest)
        if memo is not None and memo[1] > now:
            self._memo.move_to_end(digest)
            return memo[0]
        try:
            cert, namespace, name = self.pki.verify_client(der, now=now)
        except ValueError as exc:
            raise GatewayError(401, "CertificateInvalid", str(exc)) from None
        ident = DeviceIdentity(namespace, name, format(cert.serial_number, "x"))
        self._memo[digest] = (ident, cert.not_valid_after_utc)
        if len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)
        return ident

    def device(self, request: web.Request) -> tuple[DeviceIdentity, EdgeDevice]:
        """The identity and its cached EdgeDevice, if it may act now; else raise."""
        ident = self.certificate(request)
        device = self._cache.get(*ident.key)
        refusal = deviceaccess.refusal(device, ident.serial)
        if refusal is not None:
            raise GatewayError(refusal.status, refusal.reason, refusal.message)
        assert device is not None  # refusal() refuses a missing device
        return ident, device

    def check(self, ident: DeviceIdentity) -> EdgeDevice:
        """Re-check a known identity against the cache now (a long-poll woke up)."""
        device = self._cache.get(*ident.key)
        refusal = deviceaccess.refusal(device, ident.serial)
        if refusal is not None:
            raise GatewayError(refusal.status, refusal.reason, refusal.message)
        assert device is not None
        return device
