"""Rollout controller: thin kopf adapters around the pure planner.

kopf's watches feed a cache of EdgeDevices, Rollouts and InferenceModels (one list at
start-up, then every watch event); a single loop runs a pass over every Rollout when
something changed, and at least once a second for the time-based gates (pauses,
``minHealthyDuration``, the progress deadline).

Each Rollout's pass runs inside the one reconcile pattern,
:class:`edgefleet.handlers.reconcile.Pass` (see ``docs/design.md``): the generation is
read once; the status comes only from the pure functions
(:func:`edgefleet.domain.rollout.decide`, :func:`edgefleet.domain.rollout.report.failed`);
it is written on exit when it differs, also when an unexpected exception escapes (typed
by :func:`edgefleet.domain.failures.classify`: ``Reconciling`` with the reason for a
temporary failure, ``Stalled`` for a permanent one). The loop, not kopf, schedules the
retries: a failed Rollout waits out the same backoff (10 s, 20 s … 5 min) before its
next pass, a permanently failed one waits for a new generation or a changed
annotation (``kubectl edgefleet rollout retry``). A pass is ``decide`` on
a snapshot of the cache, then the device writes (server-side apply, field manager
``edgefleet-rollouts``), then the status, then the Events. The cache takes every
write's answer at once, and never an older resourceVersion than it holds, so no device
is written twice; after a restart the list at start-up restores the same view.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kopf
import structlog
from kubernetes import client

from edgefleet.api import GROUP, VERSION
from edgefleet.api.rollout import Rollout, RolloutStatus
from edgefleet.clients.rolloutapi import RolloutApi
from edgefleet.domain.failures import Failure
from edgefleet.domain.rollout import DeviceWrite, Event, World, decide, report
from edgefleet.handlers.reconcile import EventSink, ObjectRef, Pass
from edgefleet.handlers.rolloutcache import KINDS, FleetCache, Key

__all__ = ["WRITERS", "Backoff", "FleetCache", "RolloutController", "register"]

log = structlog.get_logger("edgefleet.rollouts")

#: The longest a time-based gate waits past its moment.
TICK = 1.0
#: Concurrent device writes (the API client's connection pool must be at least this).
#: Assignment is bound by the API server's latency per apply, not by the operator's CPU
#: (profiled: the writers wait on responses), so many small writes go out at once; far
#: below the API server's default --max-mutating-requests-inflight (200).
WRITERS = 32


RolloutPass = Pass[RolloutStatus]


@dataclass(frozen=True)
class Backoff:
    """A Rollout whose last pass failed: the next pass waits while ``asked`` is the same."""

    asked: tuple[int, str]  # generation and annotations (promote/retry are annotations)
    retries: int
    not_before: float  # time.monotonic(); inf after a permanent failure


class RolloutController:
    """Runs passes over every Rollout in the cache, each inside a :class:`Pass`."""

    def __init__(
        self,
        api: RolloutApi,
        namespaces: tuple[str, ...] = (),
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.api = api
        self.namespaces = namespaces
        self.cache = FleetCache()
        self.clock = clock
        self.wake = asyncio.Event()
        #: Rollouts whose last pass failed: generation, failed passes, next attempt.
        self.backoff: dict[Key, Backoff] = {}
        # Device writes of one pass go out in parallel (distinct objects).
        self._pool = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="rollout-write")

    def sync(self) -> None:
        """List every kind into the cache (at start-up, before the first pass)."""
        for plural in KINDS:
            for namespace in self.namespaces or (None,):
                for item in self.api.list(plural, namespace).get("items", []):
                    self.cache.put(plural, item)

    def observe(self, plural: str, event_type: str | None, body: Any) -> None:
        if self.cache.put(plural, body, deleted=event_type == "DELETED"):
            self.wake.set()

    def run_pass(self) -> None:
        """One pass over every Rollout (refused ones get their failure as status)."""
        for (ns, name), generation, old, failure in self.cache.refused():
            ref = ObjectRef("Rollout", "rollouts", ns, name, generation)
            self._guarded(ref, old, functools.partial(self._refused, failure=failure))
        for ro in self.cache.items("rollouts"):
            if ro.metadata.model_extra and ro.metadata.model_extra.get("deletionTimestamp"):
                continue
            ref = ObjectRef(
                "Rollout",
                "rollouts",
                ro.metadata.namespace or "default",
                ro.metadata.name,
                ro.metadata.generation or 0,
            )
            self._guarded(ref, ro.status, functools.partial(self._step, ro=ro), rollout=ro)

    def reconcile(self, ro: Rollout) -> None:
        """One pass over one Rollout (ignoring any backoff)."""
        ref = ObjectRef(
            "Rollout",
            "rollouts",
            ro.metadata.namespace or "default",
            ro.metadata.name,
            ro.metadata.generation or 0,
        )
        self.backoff.pop((ref.namespace, ref.name), None)
        self._guarded(ref, ro.status, functools.partial(self._step, ro=ro), rollout=ro)

    def _guarded(
        self,
        ref: ObjectRef,
        observed: RolloutStatus | None,
        body: Callable[[RolloutPass], None],
        rollout: Rollout | None = None,
    ) -> None:
        """Run ``body`` in a pass; a failed pass waits out its backoff (same generation)."""
        key, now = (ref.namespace, ref.name), time.monotonic()
        notes = rollout.metadata.annotations if rollout is not None else None
        asked = (ref.generation, json.dumps(notes or {}, sort_keys=True))
        held = self.backoff.get(key)
        if held is not None and held.asked == asked and now < held.not_before:
            return
        retry = held.retries if held is not None and held.asked == asked else 0
        try:
            with Pass(
                ref,
                observed,
                write=self._write_status,
                on_failure=functools.partial(report.failed, now=self.clock()),
                event=self._events_of(ref, rollout),
                retry=retry,
            ) as p:
                body(p)
        except kopf.TemporaryError as exc:  # status says Reconciling; retry after a backoff
            self.backoff[key] = Backoff(asked, retry + 1, now + float(exc.delay or 0))
            return
        if p.failure is not None:  # permanent: Stalled until the spec changes
            self.backoff[key] = Backoff(asked, retry + 1, math.inf)
        else:
            self.backoff.pop(key, None)

    def _refused(self, p: RolloutPass, failure: Failure) -> None:
        p.status = report.failed(
            p.status, generation=p.generation, failure=failure, now=self.clock()
        )

    def _step(self, p: RolloutPass, ro: Rollout) -> None:
        ns, model_name = p.ref.namespace, ro.spec.model.name
        world = World(
            rollout=ro,
            model=self.cache.get("inferencemodels", ns, model_name),
            devices=self.cache.items("edgedevices", ns),
            rivals=[
                r
                for r in self.cache.items("rollouts", ns)
                if r.spec.model.name == model_name and r.metadata.name != p.ref.name
            ],
            now=self.clock(),
        )
        decision = decide(world)
        applied = sum(self._pool.map(lambda w: self._apply(w, p.log), decision.writes))
        p.status = decision.status
        for event in decision.events:
            p.event(event.type, event.reason, event.message)
        if applied or decision.events:
            p.log.info(
                "rollout pass",
                phase=decision.status.phase,
                step=decision.status.current_step,
                writes=applied,
                events=[e.reason for e in decision.events],
            )

    def _apply(self, write: DeviceWrite, bound: Any) -> bool:
        try:
            self.cache.put("edgedevices", self.api.apply_device(write))
        except client.ApiException as exc:  # the device is written again next pass
            bound.warning(
                "device write failed, retrying next pass",
                device=write.name,
                write=write.kind,
                status=exc.status,
            )
            return False
        return True

    def _write_status(self, ref: ObjectRef, status: RolloutStatus) -> None:
        self.cache.put("rollouts", self.api.apply_status(ref.namespace, ref.name, status))

    def _events_of(self, ref: ObjectRef, ro: Rollout | None) -> EventSink:
        def post(type_: str, reason: str, message: str) -> None:
            if ro is not None:
                self.api.post_event(ro, Event(type_, reason, message))
            else:
                log.info("rollout event", namespace=ref.namespace, name=ref.name, reason=reason)

        return post

    async def loop(self) -> None:
        """Pass over every Rollout on a change, and at least every :data:`TICK` seconds."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=TICK)
            self.wake.clear()
            try:
                await asyncio.to_thread(self.run_pass)
            except Exception:  # keep the loop alive; the next pass retries
                log.exception("rollout loop pass failed")


_CACHE_ID = "rollout-cache"


def _quiet_cache(record: logging.LogRecord) -> bool:
    """Drop kopf's per-event success lines of the cache handlers (one per device event)."""
    return _CACHE_ID not in record.getMessage() or record.levelno > logging.INFO


def register(registry: kopf.OperatorRegistry, controller: RolloutController) -> None:
    """Register the rollout controller's watches, start-up and clean-up on ``registry``."""
    tasks: list[asyncio.Task[None]] = []

    for plural in KINDS:

        def make(kind: str) -> Callable[..., Any]:
            async def observe(event: kopf.RawEvent, **_: Any) -> None:
                controller.observe(kind, event.get("type"), event["object"])

            return observe

        kopf.on.event(GROUP, VERSION, plural, id=f"{_CACHE_ID}-{plural}", registry=registry)(
            make(plural)
        )
    # kopf logs every handler call; the cache sees every event of the fleet: keep quiet.
    logging.getLogger("kopf.objects").addFilter(_quiet_cache)

    @kopf.on.startup(registry=registry)
    async def start_rollouts(**_: Any) -> None:
        controller.wake = asyncio.Event()
        await asyncio.to_thread(controller.sync)
        tasks.append(asyncio.get_running_loop().create_task(controller.loop()))
        log.info("rollout controller started", rollouts=len(controller.cache.items("rollouts")))

    @kopf.on.cleanup(registry=registry)
    async def stop_rollouts(**_: Any) -> None:
        for task in tasks:
            task.cancel()
