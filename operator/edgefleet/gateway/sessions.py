"""Heartbeats in memory: who polls this replica, and who went quiet.

A device's long-poll is its heartbeat (one connection per device). This replica keeps,
per device it serves, the number of open polls and the time of its last request —
nothing another replica would need to be correct. Transitions go to the status
writer: the first poll after being offline (or after polling another replica) marks
``Online=True`` naming this replica; a device with no open poll and no request for
``online_grace`` is marked ``Online=False``. :meth:`Sessions.sweep` also covers devices
this replica never saw: those whose ``Online`` condition names this replica from
before a restart, and those held by a replica whose Lease expired (only the
alphabetically first live replica does that, so replicas do not race).
"""

from __future__ import annotations

import asyncio
import datetime
import time
from dataclasses import dataclass, field

from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.clients.devicecache import DeviceCache, DeviceKey
from edgefleet.clients.replicas import ReplicaLeases
from edgefleet.domain import devicestatus
from edgefleet.domain.devicestatus import Observation
from edgefleet.gateway.metrics import GatewayMetrics
from edgefleet.gateway.status import StatusWriter
from edgefleet_node.protocol import wire

__all__ = ["Session", "Sessions"]

_CLONE_SUPERSESSIONS = 6  # polls replaced within a minute that mean two devices


@dataclass
class Session:
    polls: int = 0
    last: float = 0.0  # monotonic time of the last request
    supersede: asyncio.Event | None = None  # set to end the open poll early
    instance: str = ""
    superseded: list[float] = field(default_factory=list)  # monotonic times, last minute


def _inputs(device: EdgeDevice) -> tuple[object, ...]:
    """What, beyond the gateway's own fields, its conditions depend on."""
    status = device.status
    enrollment = status.enrollment if status is not None else None
    return (
        device.metadata.generation,
        status.desired_revision if status is not None else None,
        enrollment.revoked if enrollment is not None else None,
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Sessions:
    def __init__(
        self,
        cache: DeviceCache,
        writer: StatusWriter,
        metrics: GatewayMetrics,
        *,
        replica: str,
        grace: datetime.timedelta,
        last_seen_interval: datetime.timedelta,
        leases: ReplicaLeases | None = None,
    ) -> None:
        self._cache = cache
        self._writer = writer
        self._metrics = metrics
        self.replica = replica
        self._grace = grace.total_seconds()
        self._interval = last_seen_interval
        self._leases = leases
        self._sessions: dict[DeviceKey, Session] = {}
        self._started = time.monotonic()

    def get(self, key: DeviceKey) -> Session | None:
        return self._sessions.get(key)

    def _needs_write(self, device: EdgeDevice, now: datetime.datetime) -> bool:
        status = device.status
        if status is None or devicestatus.online_holder(device) != self.replica:
            return True
        if status.last_seen is None:
            return True
        seen = wire.parse_time(status.last_seen, "lastSeen")
        return seen + self._interval <= now

    def touch(self, key: DeviceKey, device: EdgeDevice, *, claim: bool = True) -> Session:
        """A request from ``device``: remember it; queue Online/lastSeen when they move.
        Only the long-poll ``claim``s the device for this replica (its heartbeat): a
        report that a load balancer sent elsewhere must not move ``Online`` back and forth."""
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = Session()
            self._metrics.connected_devices.set(len(self._sessions))
        session.last = time.monotonic()
        now = _now()
        if claim and self._needs_write(device, now):
            self._writer.mark(key, Observation(now, online=True, replica=self.replica, seen=True))
        return session

    def poll_started(self, key: DeviceKey, session: Session) -> asyncio.Event:
        """Count an open poll; end the previous one of this device (one connection per
        device: a new poll means the old connection is gone or stale)."""
        if session.supersede is not None:
            session.supersede.set()
            self._cache.wake(key)
            # One agent replaces its own poll only when it reconnects; two copies of one
            # state directory (same key, same instance id) replace each other constantly.
            now = time.monotonic()
            session.superseded = [t for t in session.superseded if now - t < 60] + [now]
            if len(session.superseded) >= _CLONE_SUPERSESSIONS:
                self.flag_duplicate(
                    key,
                    "two connections keep replacing each other's long-poll with the same "
                    "certificate and instance id (a cloned device?)",
                )
        session.polls += 1
        session.supersede = asyncio.Event()
        self._metrics.longpolls_open.inc()
        return session.supersede

    def poll_ended(self, session: Session, superseded: asyncio.Event) -> None:
        session.polls -= 1
        session.last = time.monotonic()
        if session.supersede is superseded:
            session.supersede = None
        self._metrics.longpolls_open.dec()

    def flag_duplicate(self, key: DeviceKey, message: str) -> None:
        self._writer.mark(key, Observation(_now(), replica=self.replica, duplicate=message))

    def on_change(self, key: DeviceKey, old: EdgeDevice | None, new: EdgeDevice | None) -> None:
        """Cache listener: a spec or desired-state change can change conditions (Ready,
        Reconciling): recompute them. One replica does it: the one the device polls,
        else the first live replica."""
        if new is None or new.status is None or new.status.enrollment is None:
            return
        if old is not None and _inputs(old) == _inputs(new):
            return
        holder = devicestatus.online_holder(new)
        if holder == self.replica or (
            holder is None
            and (self._leases is None or self._leases.alive(_now())[0] == self.replica)
        ):
            self._writer.mark(key, Observation(_now(), replica=self.replica))

    def sweep(self) -> None:
        """Mark devices offline that went quiet here, or whose replica died."""
        mono, now = time.monotonic(), _now()
        for key, session in list(self._sessions.items()):
            if session.polls == 0 and mono - session.last > self._grace:
                del self._sessions[key]
                device = self._cache.get(*key)
                if device is not None and devicestatus.online_holder(device) == self.replica:
                    self._writer.mark(key, Observation(now, online=False, replica=self.replica))
        self._metrics.connected_devices.set(len(self._sessions))
        restarted_long_ago = mono - self._started > self._grace
        for key in self._cache.device_keys():
            device = self._cache.get(*key)
            if device is None or key in self._sessions:
                continue
            holder = devicestatus.online_holder(device)
            if holder is None:
                continue
            if holder == self.replica:
                if restarted_long_ago:
                    self._writer.mark(key, Observation(now, online=False, replica=self.replica))
            elif self._may_sweep_for(holder, now):
                self._writer.mark(key, Observation(now, online=False, replica=self.replica))

    def _may_sweep_for(self, holder: str, now: datetime.datetime) -> bool:
        if self._leases is None:
            return False
        died = self._leases.dead_since(holder, now)
        if died is None or (now - died).total_seconds() < self._grace:
            return False
        alive = [r for r in self._leases.alive(now) if r != holder]
        return bool(alive) and min(alive) == self.replica

    async def run(self, every: float = 5.0) -> None:
        while True:
            await asyncio.sleep(every)
            self.sweep()
