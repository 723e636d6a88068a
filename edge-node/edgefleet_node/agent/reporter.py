"""Conditions, report snapshots, and the thread that delivers them.

The agent's state changes call :meth:`Reporter.set_condition` and :meth:`Reporter.kick`;
the reporter thread snapshots (conditions, workloads with health and metrics, facts)
into the on-disk queue on every change and every ``interval`` seconds, and sends the
queue in batches. When the gateway is unreachable it backs off exponentially with full
jitter (``uniform(0, min(cap, base * 2**n))``); the queue keeps the reports meanwhile.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Literal

from edgefleet_node.agent.client import GatewayClient, GatewayError, UnreachableError
from edgefleet_node.agent.clock import Clock
from edgefleet_node.agent.reports import ReportQueue
from edgefleet_node.protocol import report as proto
from edgefleet_node.protocol import wire

__all__ = ["Backoff", "Reporter"]


class Backoff:
    """Exponential backoff with full jitter."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base, self.cap, self.failures = base, cap, 0
        self._rng = rng or random.SystemRandom()

    def next(self) -> float:
        delay = self._rng.uniform(0, min(self.cap, self.base * 2**self.failures))
        self.failures = min(self.failures + 1, 32)
        return delay

    def reset(self) -> None:
        self.failures = 0


Snapshot = Callable[[], tuple[int | None, tuple[proto.WorkloadStatus, ...], proto.Facts]]


class Reporter:
    def __init__(
        self,
        queue: ReportQueue,
        instance_id: str,
        clock: Clock,
        snapshot: Snapshot,
        *,
        interval: float = 60.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.queue = queue
        self._instance = instance_id
        self._clock = clock
        self._snapshot = snapshot
        self._interval = interval
        self._backoff = backoff or Backoff(1.0, 300.0)
        self._conditions: dict[str, proto.AgentCondition] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._client: GatewayClient | None = None
        self.last_sent: float | None = None
        self.acked = 0
        self.last_error: str | None = None

    def use(self, client: GatewayClient) -> None:
        self._client = client

    def set_condition(
        self, type_: str, status: Literal["True", "False", "Unknown"], reason: str, message: str
    ) -> bool:
        """Set a condition; whether it changed (then a report is queued soon)."""
        with self._lock:
            old = self._conditions.get(type_)
            if old is not None and (old.status, old.reason, old.message) == (
                status,
                reason,
                message[:1024],
            ):
                return False
            when = (
                old.last_transition_time
                if old is not None and old.status == status
                else wire.format_time(self._clock.now())
            )
            self._conditions[type_] = proto.AgentCondition(
                type_, status, reason, message[:1024], when
            )
        self._wake.set()
        return True

    def conditions(self) -> tuple[proto.AgentCondition, ...]:
        with self._lock:
            return tuple(self._conditions[k] for k in sorted(self._conditions))

    def kick(self) -> None:
        self._wake.set()

    def enqueue(self) -> proto.Report:
        version, workloads, facts = self._snapshot()
        return self.queue.put(
            proto.Report(
                seq=1,
                time=wire.format_time(self._clock.now()),
                instance_id=self._instance,
                desired_version=version,
                facts=facts,
                workloads=workloads,
                conditions=self.conditions(),
            )
        )

    def flush(self) -> bool:
        """Send what is queued; ``True`` when the queue is empty afterwards."""
        client = self._client
        if client is None:
            return False
        while (batch := self.queue.batch()) is not None:
            try:
                response = client.request(
                    "POST",
                    wire.REPORTS_PATH,
                    batch.to_bytes(),
                    {wire.INSTANCE_HEADER: self._instance},
                    limit=4096,
                )
                ack = proto.Ack.from_bytes(response.body)
            except (UnreachableError, GatewayError, wire.ProtocolError) as exc:
                self.last_error = str(exc)[:300]
                return False
            self.acked = max(self.acked, ack.acked)
            self.last_sent = self._clock.time()
            self.last_error = None
            if self.queue.ack(ack.acked) == 0:
                return False  # the gateway acknowledged nothing we hold: do not spin
        return True

    def run(self, stop: threading.Event) -> None:
        next_report = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if self._wake.is_set() or now >= next_report:
                self._wake.clear()
                next_report = now + self._interval
                try:
                    self.enqueue()
                except Exception as exc:  # a full disk must not end reporting
                    self.last_error = f"cannot queue a report: {type(exc).__name__}: {exc}"
            if self.flush():
                self._backoff.reset()
                wait = max(0.0, next_report - time.monotonic())
            else:
                wait = min(self._backoff.next(), max(0.0, next_report - time.monotonic()) or 1.0)
            if not stop.is_set():
                self._wake.wait(timeout=wait)
