"""EdgeDevice status failures, written by the gateway: the reconcile pattern's last step.

:class:`FailureRecorder` applies what :func:`edgefleet.domain.devicefailure.from_failure`
computes for a :class:`~edgefleet.domain.failures.Failure` (a body the models refuse, an
exception computing the status) with the gateway's field manager and the stored
``resourceVersion`` as a precondition, only when it differs from what is stored, and
posts a Warning Event with every change it writes. :func:`failed_here` tells whether a
stored status is such a failure, so the writer recomputes it once the object is fixed.
"""

from __future__ import annotations

import datetime
from typing import Any

import structlog

from edgefleet.api.conditions import Reason, Type
from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.api.meta import API_VERSION, GROUP, VERSION
from edgefleet.clients.devicecache import DeviceKey
from edgefleet.clients.kube import KubeClient, KubeError
from edgefleet.domain import devicefailure
from edgefleet.domain.conditions import find
from edgefleet.domain.failures import Failure
from edgefleet.gateway.metrics import GatewayMetrics
from edgefleet_node.protocol import wire

__all__ = ["FailureRecorder", "failed_here"]

log = structlog.get_logger("edgefleet.gateway.status")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def failed_here(device: EdgeDevice) -> bool:
    """Whether the stored status is a failure this writer recorded (to recompute)."""
    conds = device.status.conditions if device.status is not None else []
    stalled, busy = find(conds, Type.STALLED), find(conds, Type.RECONCILING)
    return (stalled is not None and stalled.reason == Reason.INVALID_SPEC) or (
        busy is not None and busy.status == "True" and busy.reason == Reason.INTERNAL_ERROR
    )


class FailureRecorder:
    """Writes failure statuses of EdgeDevices (and their Events) for the status writer."""

    def __init__(
        self, kube: KubeClient, metrics: GatewayMetrics, manager: str, replica: str
    ) -> None:
        self._kube = kube
        self._metrics = metrics
        self._manager = manager
        self.replica = replica

    @staticmethod
    def _path(key: DeviceKey) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{key[0]}/edgedevices/{key[1]}/status"

    async def write(
        self, key: DeviceKey, raw: dict[str, Any], failure: Failure, *, kind: str
    ) -> bool:
        """Apply the gateway-owned status ``failure`` stands for; ``False`` when it is
        stored already (or the object is gone or changed meanwhile: its next version
        comes through the watch). A Warning Event goes with every change written."""
        meta = raw.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        generation = meta.get("generation")
        stored = raw.get("status") if isinstance(raw.get("status"), dict) else None
        new = devicefailure.from_failure(
            stored,
            generation=generation if isinstance(generation, int) else None,
            failure=failure,
            now=_now(),
        )
        if new == devicefailure.owned_part(stored):
            return False
        body = {
            "apiVersion": API_VERSION,
            "kind": "EdgeDevice",
            "metadata": {
                "name": key[1],
                "namespace": key[0],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "status": new,
        }
        try:
            await self._kube.apply(self._path(key), body, manager=self._manager)
        except KubeError as exc:
            self._metrics.api_writes.labels(kind, str(exc.code)).inc()
            if exc.code in (404, 409):
                return False
            raise
        self._metrics.api_writes.labels(kind, "ok").inc()
        log.warning(
            "EdgeDevice status failure recorded",
            namespace=key[0],
            name=key[1],
            reason=failure.reason,
            permanent=failure.permanent,
            message=failure.message[:500],
        )
        await self._event(key, meta, failure)
        return True

    async def _event(self, key: DeviceKey, meta: dict[str, Any], failure: Failure) -> None:
        now = wire.format_time(_now())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{key[1]}.", "namespace": key[0]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": "EdgeDevice",
                "namespace": key[0],
                "name": key[1],
                "uid": meta.get("uid"),
            },
            "type": "Warning",
            "reason": failure.reason,
            "message": failure.message[:1024],
            "source": {"component": self._manager},
            "reportingComponent": self._manager,
            "reportingInstance": self.replica,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._kube.request("POST", f"/api/v1/namespaces/{key[0]}/events", body=event)
        except Exception as exc:  # an Event is best effort; status is the record
            log.warning("event not posted", namespace=key[0], name=key[1], error=str(exc)[:300])
