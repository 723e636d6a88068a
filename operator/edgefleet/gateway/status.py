"""The EdgeDevice status writer: server-side apply as ``edgefleet-gateway``, on change only.

Every write is :func:`edgefleet.domain.devicestatus.compute` over the cached object and
one observation, applied with the cached ``resourceVersion`` as a precondition, so a
replica with a stale view never reverts another replica's newer write: on a conflict it
reads the object once and computes again. A write whose result equals what is stored is
skipped. Two paths:

- :meth:`StatusWriter.write` — now (enrolment, reports: the device waits for the answer);
- :meth:`StatusWriter.mark` — coalesced heartbeat transitions (Online, lastSeen), flushed
  by :meth:`StatusWriter.run` at most ``write_rate`` per second, newest state at flush
  time (a burst of reconnects after a restart is spread out, and nothing is lost).

Failures follow the one reconcile pattern (``docs/design.md`` §Reconcile): status is
always written. An EdgeDevice the API models refuse (stored before a rule existed) is
handed over by the cache (:meth:`StatusWriter.refuse`) and an exception escaping
:func:`~edgefleet.domain.devicestatus.compute` is caught; both go through
:func:`~edgefleet.domain.failures.classify` and
:func:`~edgefleet.domain.devicefailure.from_failure` — ``Stalled=True`` reason
``InvalidSpec`` naming the field, or ``Reconciling=True`` reason ``InternalError`` — and
a Warning Event. A fixed object is recomputed at its next change (:meth:`on_change`).
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any, Final

import pydantic
import structlog

from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.api.meta import GROUP, VERSION
from edgefleet.clients.devicecache import DeviceCache, DeviceKey
from edgefleet.clients.kube import KubeClient, KubeError
from edgefleet.domain import devicestatus
from edgefleet.domain.devicestatus import Observation
from edgefleet.domain.failures import Failure, classify
from edgefleet.gateway.metrics import GatewayMetrics
from edgefleet.gateway.status_failure import FailureRecorder, failed_here
from edgefleet_node.protocol import wire

__all__ = ["FIELD_MANAGER", "StatusComputeError", "StatusWriter", "stored_owned"]

log = structlog.get_logger("edgefleet.gateway.status")

FIELD_MANAGER: Final = "edgefleet-gateway"
_METRIC_FIELDS = ("requests", "errors", "p95LatencyMs")


def stored_owned(device: EdgeDevice) -> dict[str, Any]:
    """The gateway-owned part of the stored status, shaped as :func:`compute` returns it."""
    s = device.status
    if s is None:
        return {}
    out: dict[str, Any] = {
        "conditions": [
            c.wire()
            for c in sorted(s.conditions, key=lambda c: c.type)
            if c.type in devicestatus.GATEWAY_CONDITIONS
        ],
        "current": [c.wire() for c in sorted(s.current, key=lambda c: c.model)],
    }
    if s.enrollment is not None:
        out["enrollment"] = s.enrollment.wire()
        out["enrollment"].pop("revoked", None)
    extras = {
        "currentVersion": s.current_version,
        "facts": s.facts.wire() if s.facts is not None else None,
        "reportSeq": s.report_seq,
        "appliedDocument": s.applied_document,
        "lastSeen": s.last_seen,
        "observedGeneration": s.observed_generation,
    }
    out.update({k: v for k, v in extras.items() if v is not None and v != {}})
    return out


def _comparable(owned: dict[str, Any]) -> dict[str, Any]:
    doc = dict(owned)
    if "enrollment" in doc:
        doc["enrollment"] = {k: v for k, v in doc["enrollment"].items() if k != "revoked"}
    return doc


def only_metrics_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when ``new`` differs from ``old`` only in workload counters and reportSeq."""

    def strip(doc: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in _comparable(doc).items() if k != "reportSeq"}
        out["current"] = [
            {k: v for k, v in w.items() if k not in _METRIC_FIELDS} for w in doc.get("current", [])
        ]
        return out

    return strip(old) == strip(new)


class StatusComputeError(Exception):
    """Computing a device's status failed; the failure is in its status already."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class StatusWriter:
    def __init__(
        self,
        kube: KubeClient,
        cache: DeviceCache,
        metrics: GatewayMetrics,
        *,
        replica: str,
        last_seen_interval: datetime.timedelta,
        write_rate: float,
    ) -> None:
        self._kube = kube
        self._cache = cache
        self._metrics = metrics
        self.replica = replica
        self._interval = last_seen_interval
        self._rate = write_rate
        self._pending: dict[DeviceKey, Observation] = {}
        self._refused: dict[DeviceKey, tuple[dict[str, Any], Failure]] = {}
        self._wake = asyncio.Event()
        self._failures = FailureRecorder(kube, metrics, FIELD_MANAGER, replica)
        cache.add_invalid_listener(self.refuse)
        cache.add_listener(self.on_change)

    @staticmethod
    def _path(key: DeviceKey) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{key[0]}/edgedevices/{key[1]}/status"

    def status_for(self, device: EdgeDevice, obs: Observation) -> dict[str, Any]:
        return devicestatus.compute(device, obs, last_seen_interval=self._interval)

    async def write(
        self, key: DeviceKey, obs: Observation, *, kind: str, defer_metrics: bool = False
    ) -> bool:
        """Apply what ``obs`` changes now; ``False`` when nothing needed writing (or the
        device is gone). Raises :class:`KubeError` when the API server refuses."""
        device = self._cache.get(*key)
        for attempt in range(3):
            if device is None:
                return False
            try:
                new = self.status_for(device, obs)
            except Exception as exc:
                log.error(
                    "EdgeDevice status computation failed",
                    namespace=key[0],
                    name=key[1],
                    exc_info=True,
                )
                await self.write_failure(key, device.wire(), classify(exc), kind=kind)
                raise StatusComputeError(f"{type(exc).__name__}: {exc}") from exc
            old = stored_owned(device)
            if _comparable(new) == _comparable(old):
                return False
            if defer_metrics and only_metrics_changed(old, new) and self._fresh_seen(device, obs):
                return False  # counters alone move at most once per lastSeen interval
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "EdgeDevice",
                "metadata": {
                    "name": key[1],
                    "namespace": key[0],
                    "resourceVersion": device.metadata.resource_version,
                },
                "status": new,
            }
            try:
                await self._kube.apply(self._path(key), body, manager=FIELD_MANAGER)
            except KubeError as exc:
                self._metrics.api_writes.labels(kind, str(exc.code)).inc()
                if exc.code == 404:
                    return False
                if exc.code != 409 or attempt == 2:
                    raise
                device = await self._fresh(key)
                continue
            self._metrics.api_writes.labels(kind, "ok").inc()
            return True
        return False

    def _fresh_seen(self, device: EdgeDevice, obs: Observation) -> bool:
        seen = device.status.last_seen if device.status is not None else None
        return seen is not None and wire.parse_time(seen, "lastSeen") + self._interval > obs.now

    async def _fresh(self, key: DeviceKey) -> EdgeDevice | None:
        try:
            raw = await self._kube.get(self._path(key)[: -len("/status")])
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise
        try:
            return EdgeDevice.model_validate(raw)
        except pydantic.ValidationError as exc:
            self.refuse(key, raw, exc)
            return None

    # -- failures (the reconcile pattern's on_failure, for the gateway's part) ---------
    def refuse(self, key: DeviceKey, raw: dict[str, Any], error: Exception) -> None:
        """The cache holds no model of ``raw`` (``error``): queue its failure status."""
        self._refused[key] = (raw, classify(error))
        self._wake.set()

    def on_change(self, key: DeviceKey, old: EdgeDevice | None, new: EdgeDevice | None) -> None:
        """Cache listener: an object whose stored status is a failure recorded here is
        recomputed (a fixed spec clears ``Stalled``, even for a device never enrolled)."""
        if new is None:
            return
        self._refused.pop(key, None)
        if failed_here(new):
            self.mark(key, Observation(_now(), replica=self.replica))

    async def write_failure(
        self, key: DeviceKey, raw: dict[str, Any], failure: Failure, *, kind: str
    ) -> bool:
        """Record ``failure`` in the status of ``raw`` (see :class:`FailureRecorder`)."""
        return await self._failures.write(key, raw, failure, kind=kind)

    def mark(self, key: DeviceKey, obs: Observation) -> None:
        """Queue a heartbeat transition; the newest per device wins."""
        previous = self._pending.get(key)
        if previous is not None and previous.duplicate and not obs.duplicate:
            obs = Observation(**{**obs.__dict__, "duplicate": previous.duplicate})
        self._pending[key] = obs
        self._metrics.writes_pending.set(len(self._pending))
        self._wake.set()

    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Flush queued transitions at most ``write_rate`` per second, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.drain()

    async def drain(self) -> None:
        """Write every queued refusal and transition, then return."""
        gap = 1.0 / self._rate
        while self._refused:
            key = next(iter(self._refused))
            raw, failure = self._refused.pop(key)
            try:
                await self.write_failure(key, raw, failure, kind="invalid")
            except Exception as exc:  # the next change of the object tries again
                log.warning(
                    "status write failed", namespace=key[0], name=key[1], error=str(exc)[:300]
                )
        while self._pending:
            key = next(iter(self._pending))
            obs = self._pending.pop(key)
            self._metrics.writes_pending.set(len(self._pending))
            started = time.monotonic()
            try:
                wrote = await self.write(key, obs, kind="heartbeat")
            except StatusComputeError:
                wrote = True  # recorded in status; the next observation retries
            except Exception as exc:
                log.warning(
                    "status write failed; will retry",
                    namespace=key[0],
                    name=key[1],
                    error=str(exc)[:300],
                )
                self._pending.setdefault(key, obs)  # a newer observation wins
                await asyncio.sleep(1.0)
                wrote = True
            if wrote:
                await asyncio.sleep(max(0.0, gap - (time.monotonic() - started)))
