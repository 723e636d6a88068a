"""Gateway replica liveness through Leases: who is alive to hold devices' long-polls.

Each gateway replica renews a Lease ``edgefleet-gateway-<replica>`` in its namespace
(every ``duration / 3``; one small write per replica, not per device) and lists the
others' Leases. A device's ``Online=True`` condition names the replica that holds its
long-poll; when that replica's Lease has expired for longer than the grace period, a
surviving replica marks the device offline (see ``docs/gateway.md``). A replica that
stops cleanly deletes its Lease so devices fail over at once.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any, Final

import structlog

from edgefleet.clients.kube import KubeClient, KubeError

__all__ = ["LEASE_PREFIX", "ReplicaLeases"]

log = structlog.get_logger("edgefleet.gateway.replicas")

LEASE_PREFIX: Final = "edgefleet-gateway-"
_LABEL = "edgefleet.io/gateway-replica"


def _micro(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ReplicaLeases:
    """This replica's Lease, and the last view of every replica's."""

    def __init__(
        self, kube: KubeClient, namespace: str, replica: str, duration_seconds: int = 30
    ) -> None:
        self._kube = kube
        self._namespace = namespace
        self.replica = replica
        self.duration = duration_seconds
        self._expiry: dict[str, datetime.datetime] = {}
        self._missing_since: dict[str, datetime.datetime] = {}
        self.renewed = asyncio.Event()

    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self._namespace}/leases"

    def _body(self, now: datetime.datetime) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": LEASE_PREFIX + self.replica,
                "namespace": self._namespace,
                "labels": {_LABEL: self.replica},
            },
            "spec": {
                "holderIdentity": self.replica,
                "leaseDurationSeconds": self.duration,
                "renewTime": _micro(now),
            },
        }

    async def renew(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        await self._kube.apply(
            f"{self._path}/{LEASE_PREFIX}{self.replica}",
            self._body(now),
            manager="edgefleet-gateway",
        )
        self._expiry[self.replica] = now + datetime.timedelta(seconds=self.duration)
        self.renewed.set()

    async def refresh(self) -> None:
        doc = await self._kube.list(self._path, labelSelector=_LABEL)
        now = datetime.datetime.now(datetime.UTC)
        seen: dict[str, datetime.datetime] = {}
        for item in doc.get("items", []):
            spec = item.get("spec") or {}
            holder, renew = spec.get("holderIdentity"), spec.get("renewTime")
            if not holder or not renew:
                continue
            renewed = datetime.datetime.fromisoformat(renew.replace("Z", "+00:00"))
            seen[holder] = renewed + datetime.timedelta(
                seconds=int(spec.get("leaseDurationSeconds") or self.duration)
            )
        for replica in seen:
            self._missing_since.pop(replica, None)
        for replica in set(self._expiry) - set(seen):
            self._missing_since.setdefault(replica, now)
        self._expiry = {**{r: t for r, t in self._expiry.items() if r not in seen}, **seen}

    def alive(self, now: datetime.datetime) -> list[str]:
        """Replicas whose Lease has not expired (this one included)."""
        live = {r for r, t in self._expiry.items() if t > now and r not in self._missing_since}
        return sorted(live | {self.replica})

    def dead_since(self, replica: str, now: datetime.datetime) -> datetime.datetime | None:
        """When ``replica`` stopped being alive, or ``None`` while it is (or might be)."""
        if replica == self.replica:
            return None
        expiry = self._expiry.get(replica)
        missing = self._missing_since.get(replica)
        if missing is not None:
            return min(missing, expiry) if expiry is not None else missing
        if expiry is None:
            # Never seen: a replica that died before this one started. Count from now.
            self._missing_since[replica] = now
            return now
        return expiry if expiry <= now else None

    async def run(self) -> None:
        """Renew and refresh every third of the lease duration until cancelled."""
        while True:
            try:
                await self.renew()
                await self.refresh()
            except (KubeError, OSError, ValueError) as exc:
                log.warning("lease renewal failed", replica=self.replica, error=str(exc)[:300])
            except Exception as exc:
                log.warning("lease renewal failed", replica=self.replica, error=str(exc)[:300])
            await asyncio.sleep(self.duration / 3)

    async def release(self) -> None:
        try:
            await self._kube.request("DELETE", f"{self._path}/{LEASE_PREFIX}{self.replica}")
        except KubeError as exc:
            if exc.code != 404:
                raise
