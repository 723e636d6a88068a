"""The rollout controller's device writes, pipelined: queued to a pool of writers,
tracked *in flight* until their answer is in the cache.

A pass hands its writes to :meth:`Writes.submit` and ends without waiting; the next
pass asks :meth:`Writes.snapshot` which devices are still in flight (``decide`` counts
them as assigned and never writes them again) and how many more writes may be queued
(:data:`IN_FLIGHT` at most). The answer of a write goes into the cache (``store``)
before the device leaves the in-flight set, so a pass that no longer sees a device in
flight sees its answer. A write that fails with an API error is logged and decided
again by a later pass; one that raises anything else is kept for the rollout's next
pass, which fails with it (typed, with backoff). :meth:`Writes.cancel` drops an
aborted rollout's queued assignments.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from edgefleet.domain.rollout import DeviceWrite

__all__ = ["IN_FLIGHT", "WRITERS", "Writes"]

Key = tuple[str, str]

#: Concurrent device writes (the API client's connection pool must be at least this).
#: Assignment is bound by the API server's latency per apply, not by the operator's CPU
#: (profiled: the writers wait on responses), so many small writes go out at once; far
#: below the API server's default --max-mutating-requests-inflight (200).
WRITERS = 32
#: Device writes queued at once (over all rollouts): the next pass overlaps these.
IN_FLIGHT = 1000


@dataclass(frozen=True)
class _Flight:
    """A queued or running device write: whose it is, and its future."""

    rollout: Key
    kind: str
    future: Future[bool]


class Writes:
    """Queued and running device writes (see the module docstring)."""

    def __init__(
        self,
        apply: Callable[[DeviceWrite], dict[str, Any]],
        store: Callable[[dict[str, Any]], object],
        landed: Callable[[], None],
    ) -> None:
        self._apply_device, self._store, self._on_landed = apply, store, landed
        self._pool = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="rollout-write")
        self._lock = threading.Lock()
        self._flying: dict[Key, _Flight] = {}  # device -> its queued or running write
        self._broken: dict[Key, BaseException] = {}  # rollout -> a write's unexpected error

    def snapshot(self, rollout: Key) -> tuple[BaseException | None, frozenset[str], int]:
        """For a pass over ``rollout``: a write's error to raise, the names in flight
        in its namespace, and how many writes it may queue. Take it before reading the
        devices from the cache."""
        with self._lock:
            broken = self._broken.pop(rollout, None)
            flying = frozenset(n for (ns, n) in self._flying if ns == rollout[0])
            return broken, flying, max(0, IN_FLIGHT - len(self._flying))

    def in_flight(self) -> int:
        """Device writes queued or running."""
        with self._lock:
            return len(self._flying)

    def submit(self, rollout: Key, write: DeviceWrite, bound: Any) -> None:
        device = (write.namespace, write.name)
        with self._lock:
            if device in self._flying:  # decide never does this; the guard makes it certain
                return
            future = self._pool.submit(self._apply, rollout, write, bound)
            self._flying[device] = _Flight(rollout, write.kind, future)
        future.add_done_callback(lambda done: self._landed(device, done))

    def cancel(self, rollout: Key | None = None) -> None:
        """Cancel queued writes that have not started: ``rollout``'s assignments, or all."""
        with self._lock:
            queued = [
                f.future
                for f in self._flying.values()
                if rollout is None or (f.rollout == rollout and f.kind == "assign")
            ]
        for future in queued:
            future.cancel()

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every queued device write has its answer (tests, shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                futures = [f.future for f in self._flying.values()]
            if not futures:
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"{len(futures)} device writes still in flight")
            for future in futures:
                with contextlib.suppress(Exception):
                    future.exception(timeout=left)

    def _landed(self, device: Key, done: Future[bool]) -> None:
        with self._lock:
            self._flying.pop(device, None)
        if not done.cancelled() and done.exception() is None and done.result():
            self._on_landed()  # a failed write waits for the next tick, not the next gap

    def _apply(self, rollout: Key, write: DeviceWrite, bound: Any) -> bool:
        try:
            self._store(self._apply_device(write))
        except client.ApiException as exc:  # a later pass decides the device again
            bound.warning(
                "device write failed, retrying next pass",
                device=write.name,
                write=write.kind,
                status=exc.status,
            )
            return False
        except Exception as exc:  # the rollout's next pass fails with it (typed)
            with self._lock:
                self._broken.setdefault(rollout, exc)
            raise
        return True
