"""The device API's long-lived routes: the desired-state long-poll and reports.

:class:`DeviceRoutes` extends :class:`~edgefleet.gateway.enrol_routes.EnrolRoutes`
(CA bundle, enrol, renew) and is what the gateway mounts. Handlers parse with the
shared protocol types (:mod:`edgefleet_node.protocol`), decide with the pure domain
functions, read the watch cache and write through the status writer; every refusal
is a :class:`~edgefleet.gateway.admission.GatewayError` raised before anything is
written. A long-poll answers at once when the device's document version differs
from the one it has, else when the cache says the device changed, else after
``wait`` seconds with 304; a lock-out (suspension, deletion, revocation) ends it.
Reports are idempotent by ``seq``: a batch holding nothing newer than what this replica
took or the EdgeDevice stores is acknowledged without a write; every report is counted
in ``edgefleet_gateway_reports_total{outcome}`` (:mod:`~edgefleet.gateway.report_ledger`).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from edgefleet.api.edgedevice import CurrentWorkload, EdgeDevice
from edgefleet.domain import deviceaccess
from edgefleet.domain.devicestatus import Observation
from edgefleet.gateway.admission import GatewayError
from edgefleet.gateway.enrol_routes import (
    EnrolRoutes,
    TokenChecker,
    TokenRedeemer,
    enrollment_of,
    utc_now,
)
from edgefleet.gateway.identity import DeviceIdentity
from edgefleet.gateway.report_ledger import ReportLedger
from edgefleet_node.protocol import report, wire
from edgefleet_node.protocol.desired import PollResponse
from edgefleet_node.protocol.wire import ProtocolError

__all__ = ["DeviceRoutes", "TokenChecker", "TokenRedeemer"]

log = structlog.get_logger("edgefleet.gateway")

_INSTANCE = re.compile(r"[0-9a-f]{32}")


@dataclass
class DeviceRoutes(EnrolRoutes):
    stopping: bool = False
    ledger: ReportLedger = field(default_factory=ReportLedger)

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

    def _check_instance(self, ident: DeviceIdentity, device: EdgeDevice, instance: str) -> None:
        enrolled = enrollment_of(device)
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
        enrolled = enrollment_of(device)
        if enrolled is None or enrolled.previous_serial is None:
            return
        if deviceaccess.refusal(device, ident.serial) is None and (
            int(ident.serial, 16) == int(enrolled.certificate_serial, 16)
        ):
            settled = enrolled.model_copy(update={"previous_serial": None})
            await self._write(ident.key, Observation(utc_now(), enrollment=settled), "renew")

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
        doc = deviceaccess.build_document(device, utc_now(), self.cfg.document_ttl)
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
        seqs = [r.seq for r in batch.reports]
        tally = self.ledger.tally(ident.key, newest.instance_id, seqs, stored_seq)
        if tally.accepted == 0:
            self.metrics.reports.labels("duplicate").inc(tally.duplicate)
            return self._respond(report.Ack(tally.newest).to_bytes())
        obs = Observation(
            utc_now(),
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
        self.ledger.commit(ident.key, newest.instance_id, newest.seq)  # counted once taken
        for outcome in ("accepted", "duplicate", "gap"):
            self.metrics.reports.labels(outcome).inc(getattr(tally, outcome))
        if tally.gap:
            log.info("report gap", namespace=ident.namespace, name=ident.name, missing=tally.gap)
        return self._respond(report.Ack(newest.seq).to_bytes())
