"""The identity routes of the device API: the CA bundle, enrol and renew.

:class:`EnrolRoutes` holds what every device route needs (configuration, the watch
cache, the status writer, the PKI) and answers the calls that give a device its
identity: ``enrol`` (a bootstrap token and a CSR made on the device ⇒ a short-lived
client certificate; the token is checked, then the platform judged, and only then
used up, so a device refused for its platform keeps its token for a retry) and
``renew`` over mTLS. :class:`~edgefleet.gateway.device_routes.DeviceRoutes` adds the
desired-state long-poll and reports. Every refusal is a
:class:`~edgefleet.gateway.admission.GatewayError` raised before anything is written,
except ``PlatformMismatch``, recorded as ``Enrolled=False`` on the EdgeDevice.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from edgefleet.api.edgedevice import EdgeDevice, Enrollment
from edgefleet.clients.devicecache import DeviceCache, DeviceKey
from edgefleet.clients.kube import KubeError
from edgefleet.domain.devicestatus import DeviceReason, Observation
from edgefleet.gateway.admission import GatewayError, read_body
from edgefleet.gateway.config import GatewayConfig
from edgefleet.gateway.identity import Identifier
from edgefleet.gateway.metrics import GatewayMetrics
from edgefleet.gateway.sessions import Sessions
from edgefleet.gateway.status import StatusWriter
from edgefleet_node.protocol import enroll, report, wire
from edgefleet_node.protocol.enroll import BootstrapToken
from edgefleet_node.protocol.wire import ProtocolError

__all__ = ["EnrolRoutes", "TokenChecker", "TokenRedeemer", "enrollment_of", "utc_now"]

log = structlog.get_logger("edgefleet.gateway")

#: Uses a bootstrap token up (blocking; run in a thread) or raises an error with
#: ``reason`` and a message (``edgefleet.clients.tokens.TokenError``).
TokenRedeemer = Callable[[enroll.BootstrapToken], Any]
#: Checks a bootstrap token without using it up (``edgefleet.clients.tokens.check``).
TokenChecker = TokenRedeemer


def utc_now() -> datetime.datetime:
    """The current time as status records it (UTC, whole seconds)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def enrollment_of(device: EdgeDevice) -> Enrollment | None:
    """The device's enrolment record, if it has one."""
    return device.status.enrollment if device.status is not None else None


@dataclass
class EnrolRoutes:
    cfg: GatewayConfig
    cache: DeviceCache
    identifier: Identifier
    sessions: Sessions
    writer: StatusWriter
    metrics: GatewayMetrics
    pki: Any  # edgefleet.clients.pki.GatewayPki (swapped on rotation)
    redeem: TokenRedeemer

    #: When given, the token is checked before the platform is compared and redeemed
    #: only after: a device refused for its platform keeps its token for a retry.
    check_token: TokenChecker | None = None

    # -- helpers ---------------------------------------------------------------
    async def _body(self, request: web.Request, limit: int) -> bytes:
        return await read_body(request, limit, self.cfg.limits.body_timeout)

    async def _write(self, key: DeviceKey, obs: Observation, kind: str, **kw: Any) -> bool:
        try:
            return await self.writer.write(key, obs, kind=kind, **kw)
        except (KubeError, OSError) as exc:
            log.warning(
                "status write failed", namespace=key[0], name=key[1], kind=kind, error=str(exc)
            )
            raise GatewayError(
                503,
                "Unavailable",
                "the control plane did not take the update; retry",
                headers={"Retry-After": str(self.cfg.limits.retry_after)},
            ) from None

    def _respond(self, body: bytes, status: int = 200) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    # -- routes ----------------------------------------------------------------
    async def ca(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self.pki.gateway_ca_bundle(), content_type="application/x-pem-file"
        )

    async def enroll(self, request: web.Request) -> web.Response:
        body = await self._body(request, wire.MAX_ENROLL_BODY)
        try:
            req = enroll.EnrollRequest.from_bytes(body)
            _csr, namespace, name = enroll.csr_identity(req.csr_pem)
            facts = report.Facts.from_json(req.facts, "enrol request facts")
        except ProtocolError as exc:
            raise GatewayError(400, "Malformed", str(exc)) from None
        if (namespace, name) != (req.token.namespace, req.token.device):
            raise GatewayError(
                400,
                "CsrSubjectMismatch",
                f"the CSR names {namespace}/{name} but the token is for another device",
            )
        key = (namespace, name)
        device = self.cache.get(*key)
        if device is None or (device.metadata.model_extra or {}).get("deletionTimestamp"):
            raise GatewayError(401, "TokenInvalid", "the bootstrap token cannot be used")
        if device.spec.suspended:
            raise GatewayError(403, "Suspended", "the device is suspended (spec.suspended)")
        if self.check_token is not None:  # a valid token first: only its holder learns more
            await self._token(self.check_token, req.token)
            await self._platform(key, device, req.platform, "enrol again with the same token")
        await self._token(self.redeem, req.token)
        if self.check_token is None:
            await self._platform(key, device, req.platform, "enrol with a new token")
        now = utc_now()
        try:
            cert = self.pki.issue(
                req.csr_pem, namespace=namespace, device=name, lifetime=self.cfg.cert_lifetime
            )
        except ValueError as exc:
            raise GatewayError(400, "CsrInvalid", str(exc)) from None
        enrollment = Enrollment(
            certificate_serial=format(cert.serial_number, "x"),
            not_after=wire.format_time(cert.not_valid_after_utc),
            instance_id=req.instance_id,
            enrolled_at=wire.format_time(now),
        )
        previous = enrollment_of(device)
        fresh_seq = previous is None or previous.instance_id != req.instance_id
        obs = Observation(
            now,
            enrollment=enrollment,
            fresh=True,
            facts={k: v for k, v in facts.to_json().items() if k != "platform"},
            report_seq=0 if fresh_seq else None,
        )
        await self._write(key, obs, "enroll")
        log.info(
            "device enrolled", namespace=namespace, name=name, serial=enrollment.certificate_serial
        )
        return self._respond(self.pki.enroll_response(cert).to_bytes())

    async def _token(self, use: TokenRedeemer, token: BootstrapToken) -> None:
        try:
            await asyncio.to_thread(use, token)
        except Exception as exc:
            reason = getattr(exc, "reason", None)
            if not isinstance(reason, str):
                raise
            if reason in ("TokenInvalid", "TokenExpired"):
                raise GatewayError(401, reason, str(exc)) from None
            raise GatewayError(  # e.g. a conflict in the token store: transient
                503, reason, str(exc), headers={"Retry-After": str(self.cfg.limits.retry_after)}
            ) from None

    async def _platform(
        self, key: tuple[str, str], device: EdgeDevice, platform: str, then: str
    ) -> None:
        """Refuse (and say so in the EdgeDevice's conditions) a platform not in the spec."""
        if platform == device.spec.platform:
            return
        message = (
            f"the device reports {platform} but spec.platform is {device.spec.platform}:"
            f" fix one, then {then}"
        )
        refusal = (DeviceReason.PLATFORM_MISMATCH, message)
        refused = Observation(utc_now(), enrollment_refused=refusal)
        await self._write(key, refused, "enroll")
        raise GatewayError(403, "PlatformMismatch", message)

    async def renew(self, request: web.Request) -> web.Response:
        ident, device = self.identifier.device(request)
        body = await self._body(request, wire.MAX_ENROLL_BODY)
        try:
            req = enroll.RenewRequest.from_bytes(body)
            _csr, namespace, name = enroll.csr_identity(req.csr_pem)
        except ProtocolError as exc:
            raise GatewayError(400, "Malformed", str(exc)) from None
        if (namespace, name) != ident.key:
            raise GatewayError(
                400, "CsrSubjectMismatch", "the CSR must name the device of the certificate"
            )
        try:
            cert = self.pki.issue(
                req.csr_pem, namespace=namespace, device=name, lifetime=self.cfg.cert_lifetime
            )
        except ValueError as exc:
            raise GatewayError(400, "CsrInvalid", str(exc)) from None
        enrolled = enrollment_of(device)
        assert enrolled is not None  # identifier.device() refuses devices without one
        renewed = enrolled.model_copy(
            update={
                "certificate_serial": format(cert.serial_number, "x"),
                "not_after": wire.format_time(cert.not_valid_after_utc),
                "previous_serial": ident.serial,
            }
        )
        await self._write(ident.key, Observation(utc_now(), enrollment=renewed), "renew")
        log.info("device certificate renewed", namespace=namespace, name=name)
        return self._respond(self.pki.enroll_response(cert).to_bytes())
