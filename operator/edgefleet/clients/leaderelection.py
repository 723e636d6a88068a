"""Lease-based leader election for the operator (see :mod:`edgefleet.domain.leader`).

:class:`LeaderElector` blocks in :meth:`~LeaderElector.acquire` until this replica
holds the Lease, then renews it from a thread; when a renewal has not succeeded
within the renew deadline it sets the stop flag it was given (kopf stops) and
records the loss, so the process exits non-zero and is restarted as a candidate.
:meth:`~LeaderElector.release` hands the Lease over at once on a clean shutdown.
"""

from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from edgefleet.domain.leader import Action, LeaseRecord, decide

__all__ = ["ElectionSettings", "LeaderElector"]

log = structlog.get_logger("edgefleet.leader")


@dataclass(frozen=True)
class ElectionSettings:
    namespace: str
    name: str = "edgefleet-operator"
    lease_seconds: int = 15
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LeaderElector:
    def __init__(self, api: client.ApiClient, settings: ElectionSettings, identity: str) -> None:
        self._leases = client.CoordinationV1Api(api)
        self._s = settings
        self.identity = identity
        self.lost = threading.Event()
        self._stop_renewing = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> client.V1Lease | None:
        try:
            lease: client.V1Lease = self._leases.read_namespaced_lease(
                self._s.name, self._s.namespace
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return lease

    @staticmethod
    def _spec(lease: client.V1Lease | None) -> client.V1LeaseSpec:
        return (lease.spec if lease is not None else None) or client.V1LeaseSpec()

    @classmethod
    def _record(cls, lease: client.V1Lease) -> LeaseRecord:
        spec = cls._spec(lease)
        return LeaseRecord(
            holder=spec.holder_identity,
            renew_time=spec.renew_time,
            duration_seconds=spec.lease_duration_seconds or 15,
            transitions=spec.lease_transitions or 0,
        )

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards."""
        lease = self._read()
        now = _now()
        action = decide(None if lease is None else self._record(lease), self.identity, now)
        if action is Action.WAIT:
            return False
        spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self._s.lease_seconds,
            renew_time=now,
        )
        try:
            if lease is None:
                spec.acquire_time, spec.lease_transitions = now, 0
                body = client.V1Lease(
                    metadata=client.V1ObjectMeta(name=self._s.name, namespace=self._s.namespace),
                    spec=spec,
                )
                self._leases.create_namespaced_lease(self._s.namespace, body)
            else:
                record = self._record(lease)
                spec.acquire_time = (
                    self._spec(lease).acquire_time if action is Action.RENEW else now
                )
                spec.lease_transitions = record.transitions + (action is Action.TAKE)
                lease.spec = spec  # the resourceVersion read makes this a compare-and-swap
                self._leases.replace_namespaced_lease(self._s.name, self._s.namespace, lease)
        except ApiException as exc:
            if exc.status in (409, 422):
                return False  # someone else won the race
            raise
        if action is not Action.RENEW:
            log.info("leadership acquired", lease=f"{self._s.namespace}/{self._s.name}",
                     identity=self.identity)  # fmt: skip
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Block until leading (True) or ``stop`` is set (False)."""
        logged = False
        while not stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    return True
            except (ApiException, OSError) as exc:
                log.warning("lease check failed", error=str(exc))
            if not logged:
                lease = self._read()
                log.info("waiting for leadership", lease=f"{self._s.namespace}/{self._s.name}",
                         holder=self._spec(lease).holder_identity)  # fmt: skip
                logged = True
            stop.wait(self._s.retry_seconds)
        return False

    def keep(self, on_lost: threading.Event) -> None:
        """Renew from a daemon thread; on a missed renew deadline set ``on_lost``."""

        def renew() -> None:
            last_ok = time.monotonic()
            while not self._stop_renewing.wait(self._s.retry_seconds):
                try:
                    if self.try_acquire_or_renew():
                        last_ok = time.monotonic()
                        continue
                except (ApiException, OSError) as exc:
                    log.warning("lease renewal failed", error=str(exc))
                if time.monotonic() - last_ok > self._s.renew_deadline_seconds:
                    log.error("leadership lost", lease=f"{self._s.namespace}/{self._s.name}")
                    self.lost.set()
                    on_lost.set()
                    return

        self._thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and hand the Lease over (a clean shutdown; best effort)."""
        self._stop_renewing.set()
        if self._thread is not None:
            self._thread.join(timeout=self._s.retry_seconds + 5)
        if self.lost.is_set():
            return
        try:
            lease = self._read()
            spec = self._spec(lease)
            if lease is not None and spec.holder_identity == self.identity:
                spec.holder_identity = None
                spec.renew_time = None
                lease.spec = spec
                self._leases.replace_namespaced_lease(self._s.name, self._s.namespace, lease)
                log.info("leadership released", lease=f"{self._s.namespace}/{self._s.name}")
        except (ApiException, OSError) as exc:
            log.warning("lease release failed", error=str(exc))
