"""The device API: CA bundle, enrol, renew, the desired-state long-poll, reports.

Handlers parse with the shared protocol types (:mod:`edgefleet_node.protocol`), decide
with the pure domain functions, read the watch cache and write through the status
writer. Every refusal is a :class:`~edgefleet.gateway.admission.GatewayError` raised
before anything is written (the one exception is ``PlatformMismatch``: the token is
used up and the refusal is recorded as ``Enrolled=False`` on the EdgeDevice).
"""

from __future__ import annotations

import asyncio
import datetime
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from edgefleet.api.edgedevice import CurrentWorkload, EdgeDevice, Enrollment
from edgefleet.clients.devicecache import DeviceCache, DeviceKey
from edgefleet.clients.kube import KubeError
from edgefleet.domain import deviceaccess
from edgefleet.domain.devicestatus import DeviceReason, Observation
from edgefleet.gateway.admission import GatewayError, read_body
from edgefleet.gateway.config import GatewayConfig
from edgefleet.gateway.identity import DeviceIdentity, Identifier
from edgefleet.gateway.metrics import GatewayMetrics
from edgefleet.gateway.sessions import Sessions
from edgefleet.gateway.status import StatusWriter
from edgefleet_node.protocol import enroll, report, wire
from edgefleet_node.protocol.desired import PollResponse
from edgefleet_node.protocol.enroll import BootstrapToken
from edgefleet_node.protocol.wire import ProtocolError

__all__ = ["DeviceRoutes", "TokenRedeemer"]

log = structlog.get_logger("edgefleet.gateway")

#: Uses a bootstrap token up (blocking; run in a thread) or raises an error with
#: ``reason`` and a message (``edgefleet.clients.tokens.TokenError``).
TokenRedeemer = Callable[[enroll.BootstrapToken], Any]
#: Checks a bootstrap token without using it up (``edgefleet.clients.tokens.check``).
TokenChecker = TokenRedeemer
_INSTANCE = re.compile(r"[0-9a-f]{32}")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _enrollment(device: EdgeDevice) -> Enrollment | None:
    return device.status.enrollment if device.status is not None else None


@dataclass
class DeviceRoutes:
    cfg: GatewayConfig
    cache: DeviceCache
    identifier: Identifier
    sessions: Sessions
    writer: StatusWriter
    metrics: GatewayMetrics
    pki: Any  # edgefleet.clients.pki.GatewayPki (swapped on rotation)
    redeem: TokenRedeemer

    stopping: bool = False
    #: When given, the token is checked before the platform is compared and redeemed
    #: only after: a device refused for its platform keeps its token for a retry.
    check_token: TokenChecker | None = None

    def stop(self) -> None:
        """Answer every open long-poll now (shutdown)."""
        self.stopping = True
        self.cache.wake_all()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(wire.CA_PATH, self.ca),
            web.post(wire.ENROLL_PATH, self.enroll),
            web.post(wire.RENEW_PATH, self.renew),
            web.get(wire.DESIRED_PATH, self.desired),
            web.post(wire.REPORTS_PATH, self.reports),
        ]

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

    def _check_instance(self, ident: DeviceIdentity, device: EdgeDevice, instance: str) -> None:
        enrolled = _enrollment(device)
        if enrolled is not None and enrolled.instance_id and instance != enrolled.instance_id:
            self.sessions.flag_duplicate(
                ident.key,
                f"agent installation {instance} presented the certificate enrolled by "
                f"{enrolled.instance_id} (a cloned device?)",
            )
            log.warning(
                "duplicate identity", namespace=ident.namespace, name=ident.name, instance=instance
            )
            raise GatewayError(
                409,
                "DuplicateIdentity",
                "another agent installation enrolled this device: enrol this one with its own "
                "EdgeDevice and token",
            )

    async def _settle_renewal(self, ident: DeviceIdentity, device: EdgeDevice) -> None:
        """The device used its new certificate: stop accepting the previous one."""
        enrolled = _enrollment(device)
        if enrolled is None or enrolled.previous_serial is None:
            return
        if deviceaccess.refusal(device, ident.serial) is None and (
            int(ident.serial, 16) == int(enrolled.certificate_serial, 16)
        ):
            settled = enrolled.model_copy(update={"previous_serial": None})
            await self._write(ident.key, Observation(_now(), enrollment=settled), "renew")

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
        now = _now()
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
        previous = _enrollment(device)
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
        refused = Observation(_now(), enrollment_refused=(DeviceReason.PLATFORM_MISMATCH, message))
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
        enrolled = _enrollment(device)
        assert enrolled is not None  # identifier.device() refuses devices without one
        renewed = enrolled.model_copy(
            update={
                "certificate_serial": format(cert.serial_number, "x"),
                "not_after": wire.format_time(cert.not_valid_after_utc),
                "previous_serial": ident.serial,
            }
        )
        await self._write(ident.key, Observation(_now(), enrollment=renewed), "renew")
        log.info("device certificate renewed", namespace=namespace, name=name)
        return self._respond(self.pki.enroll_response(cert).to_bytes())

    def _poll_args(self, request: web.Request) -> tuple[str, int | None, float]:
        instance = request.headers.get(wire.INSTANCE_HEADER, "")
        if _INSTANCE.fullmatch(instance) is None:
            raise GatewayError(400, "Malformed", f"header {wire.INSTANCE_HEADER} must be 32 hex")
        try:
            have_text = request.query.get("have")
            have = None if have_text in (None, "") else int(have_text)
            wait = float(request.query.get("wait", "60"))
        except ValueError:
            raise GatewayError(400, "Malformed", "'have' and 'wait' must be numbers") from None
        if have is not None and not 0 <= have < 2**63:
            raise GatewayError(400, "Malformed", "'have' is out of range")
        if not 0 <= wait <= self.cfg.limits.max_poll_wait:
            raise GatewayError(
                400, "Malformed", f"'wait' must be between 0 and {self.cfg.limits.max_poll_wait:g}"
            )
        return instance, have, wait

    def _document(self, device: EdgeDevice) -> bytes:
        doc = deviceaccess.build_document(device, _now(), self.cfg.document_ttl)
        keys = self.pki.document_keys
        return PollResponse(doc.sign(keys), self.pki.signed_trust_bundle()).to_bytes()

    async def desired(self, request: web.Request) -> web.StreamResponse:
        ident, device = self.identifier.device(request)
        instance, have, wait = self._poll_args(request)
        self._check_instance(ident, device, instance)
        await self._settle_renewal(ident, device)
        session = self.sessions.touch(ident.key, device)
        superseded = self.sessions.poll_started(ident.key, session)
        deadline = time.monotonic() + wait
        woke = False
        try:
            while True:
                event = self.cache.event(ident.key)
                device = self.identifier.check(ident)  # lock-out ends the poll at once
                if superseded.is_set() or self.stopping:
                    return web.Response(status=304)
                if have is None or deviceaccess.document_version(device) != have:
                    body = self._document(device)
                    if woke:
                        changed = self.cache.changed_at.get(ident.key, time.monotonic())
                        self.metrics.wakeup.observe(time.monotonic() - changed)
                    return self._respond(body)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return web.Response(status=304)
                # Taken before the check above, so a change in between is not missed.
                try:
                    async with asyncio.timeout(remaining):
                        await event.wait()
                    woke = True
                except TimeoutError:
                    return web.Response(status=304)
        finally:
            self.sessions.poll_ended(session, superseded)

    async def reports(self, request: web.Request) -> web.Response:
        ident, device = self.identifier.device(request)
        body = await self._body(request, wire.MAX_REPORT_BODY)
        try:
            batch = report.ReportBatch.from_bytes(body)
        except ProtocolError as exc:
            raise GatewayError(400, "Malformed", str(exc)) from None
        for item in batch.reports:
            self._check_instance(ident, device, item.instance_id)
        self.sessions.touch(ident.key, device, claim=False)
        newest = batch.newest()
        stored_seq = (device.status.report_seq if device.status else None) or 0
        if newest.seq <= stored_seq:
            return self._respond(report.Ack(stored_seq).to_bytes())
        obs = Observation(
            _now(),
            seen=True,
            current=[
                CurrentWorkload(
                    model=w.name,
                    version=w.version,
                    image_digest=w.manifest_digest,
                    health=w.health,
                    config_version=w.config_version,
                    requests=w.metrics.requests,
                    errors=w.metrics.errors,
                    p95_latency_ms=w.metrics.p95_latency_ms,
                )
                for w in newest.workloads
            ],
            facts={k: v for k, v in newest.facts.to_json().items() if k != "platform"},
            report_seq=newest.seq,
            applied_document=newest.desired_version,
            agent_conditions=tuple(
                (c.type, c.status, c.reason, c.message) for c in newest.conditions
            ),
        )
        await self._write(ident.key, obs, "report", defer_metrics=True)
        return self._respond(report.Ack(newest.seq).to_bytes())
