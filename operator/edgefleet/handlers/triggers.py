"""What starts a reconcile pass, and what keeps two starts off one object.

The change handlers (``create``/``update``/``resume``) are registered by each
controller; this module holds the two pieces they share with the periodic drift check:
:func:`register_timer` (re-run the reconcile of every object of a kind on an interval)
and :class:`ObjectLocks` (one lock per object, so the timer skips an object a handler is
working on). The pass itself is :class:`edgefleet.handlers.reconcile.Pass`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import kopf

from edgefleet.api import GROUP, VERSION
from edgefleet.handlers.reconcile import EventSink

__all__ = ["ObjectLocks", "register_timer"]


class ObjectLocks:
    """One lock per object, so a timer never reconciles an object a handler is on."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    @contextmanager
    def hold(self, namespace: str, name: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold the object's lock; with ``wait=False`` yield False when it is busy."""
        with self._guard:
            lock = self._locks.setdefault((namespace, name), threading.Lock())
        acquired = lock.acquire(blocking=wait)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()


def register_timer(
    registry: kopf.OperatorRegistry,
    plural: str,
    check: Callable[[dict[str, Any], EventSink], None],
    *,
    interval: float,
    initial_delay: float | None = None,
) -> None:
    """Re-check every object of ``plural`` every ``interval`` seconds for drift.

    ``check`` gets a plain copy of the body and an event sink; it should run the same
    reconcile as the change handlers (behind :class:`ObjectLocks`, skipping a busy
    object). A temporary failure waits for the next tick instead of a kopf retry.
    """

    @kopf.timer(
        GROUP,
        VERSION,
        plural,
        interval=interval,
        initial_delay=interval if initial_delay is None else initial_delay,
        idle=None,
        registry=registry,
    )
    def drift(body: kopf.Body, **_: Any) -> None:
        def event(type_: str, reason: str, message: str) -> None:
            kopf.event(body, type=type_, reason=reason, message=message)

        # A temporary failure is in status already; the next tick retries.
        with contextlib.suppress(kopf.TemporaryError):
            check(json.loads(json.dumps(dict(body))), event)
