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
``edgefleet-rollouts``), then the status, then the Events.

Writes are pipelined (:mod:`edgefleet.handlers.rolloutwrites`): a pass queues its
device writes and ends without waiting for them, so the next pass decides while the
API server answers; devices still in flight are counted as assigned and never written
again (the cache takes every write's answer before the device leaves the in-flight
set, and never an older resourceVersion than it holds). Each
rollout keeps a :class:`~edgefleet.domain.rollout.views.Memo`, so a pass re-assesses
only the devices whose resourceVersion changed. After a restart the list at start-up
restores the same view.

The loop that schedules the passes is :mod:`edgefleet.handlers.rolloutloop`; the kopf
watches, start-up and clean-up are :mod:`edgefleet.handlers.rolloutwatch`
(:func:`~edgefleet.handlers.rolloutwatch.register`).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf
import structlog

from edgefleet.api.rollout import Rollout, RolloutStatus
from edgefleet.clients.rolloutapi import RolloutApi
from edgefleet.domain.failures import Failure
from edgefleet.domain.rollout import Event, World, decide, report
from edgefleet.domain.rollout.views import Memo
from edgefleet.handlers.reconcile import EventSink, ObjectRef, Pass
from edgefleet.handlers.rolloutcache import KINDS, FleetCache, Key
from edgefleet.handlers.rolloutloop import PassLoop
from edgefleet.handlers.rolloutwrites import IN_FLIGHT, WRITERS, Writes

__all__ = ["IN_FLIGHT", "WRITERS", "Backoff", "FleetCache", "RolloutController"]

log = structlog.get_logger("edgefleet.rollouts")

RolloutPass = Pass[RolloutStatus]


def _ref(ro: Rollout) -> ObjectRef:
    """The reconcile pattern's reference to a Rollout at its current generation."""
    return ObjectRef(
        "Rollout",
        "rollouts",
        ro.metadata.namespace or "default",
        ro.metadata.name,
        ro.metadata.generation or 0,
    )


@dataclass(frozen=True)
class Backoff:
    """A Rollout whose last pass failed: the next pass waits while ``asked`` is the same."""

    asked: tuple[int, str]  # generation and annotations (promote/retry are annotations)
    retries: int
    not_before: float  # time.monotonic(); inf after a permanent failure


class RolloutController(PassLoop):
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
        self.writes = Writes(
            lambda write: self.api.apply_device(write),
            lambda body: self.cache.put("edgedevices", body),
            self._poke,
        )
        self._memos: dict[Key, Memo] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def sync(self) -> None:
        """List every kind into the cache (at start-up, before the first pass)."""
        for plural in KINDS:
            for namespace in self.namespaces or (None,):
                for item in self.api.list(plural, namespace).get("items", []):
                    self.cache.put(plural, item)

    def observe(self, plural: str, event_type: str | None, body: Any) -> None:
        if self.cache.put(plural, body, deleted=event_type == "DELETED"):
            self.wake.set()

    def in_flight(self) -> int:
        """Device writes queued or running."""
        return self.writes.in_flight()

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every queued device write has its answer (tests, shutdown)."""
        self.writes.drain(timeout)

    def run_pass(self) -> None:
        """One pass over every Rollout (refused ones get their failure as status)."""
        live = {(r.metadata.namespace or "default", r.metadata.name)
                for r in self.cache.items("rollouts")}  # fmt: skip
        for gone in set(self._memos) - live:
            del self._memos[gone]
        for (ns, name), generation, old, failure in self.cache.refused():
            ref = ObjectRef("Rollout", "rollouts", ns, name, generation)
            self._guarded(ref, old, functools.partial(self._refused, failure=failure))
        for ro in self.cache.items("rollouts"):
            if ro.metadata.model_extra and ro.metadata.model_extra.get("deletionTimestamp"):
                continue
            self._guarded(_ref(ro), ro.status, functools.partial(self._step, ro=ro), rollout=ro)

    def reconcile(self, ro: Rollout) -> None:
        """One pass over one Rollout (ignoring any backoff)."""
        ref = _ref(ro)
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
        key = (ns, p.ref.name)
        # Before the devices: a write no longer in flight has its answer in the cache.
        broken, flying, room = self.writes.snapshot(key)
        if broken is not None:
            raise broken
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
            max_writes=room,
            in_flight=flying,
            memo=self._memos.setdefault(key, Memo()),
        )
        began = time.thread_time()
        decision = decide(world)
        spent = time.thread_time() - began  # CPU of this pass's decide
        if decision.status.phase == "Aborted":
            self.writes.cancel(key)
        for write in decision.writes:
            self.writes.submit(key, write, p.log)
        applied = len(decision.writes)
        p.status = decision.status
        for event in decision.events:
            p.event(event.type, event.reason, event.message)
        if applied or decision.events:
            p.log.info(
                "rollout pass",
                phase=decision.status.phase,
                step=decision.status.current_step,
                writes=applied,
                in_flight=len(flying),
                assessed=world.memo.assessed if world.memo else None,
                decide_ms=round(spent * 1000, 1),
                events=[e.reason for e in decision.events],
            )

    def stop(self) -> None:
        """Cancel the device writes that have not started (operator shutdown)."""
        self.writes.cancel()

    def _write_status(self, ref: ObjectRef, status: RolloutStatus) -> None:
        self.cache.put("rollouts", self.api.apply_status(ref.namespace, ref.name, status))

    def _events_of(self, ref: ObjectRef, ro: Rollout | None) -> EventSink:
        def post(type_: str, reason: str, message: str) -> None:
            if ro is not None:
                self.api.post_event(ro, Event(type_, reason, message))
            else:
                log.info("rollout event", namespace=ref.namespace, name=ref.name, reason=reason)

        return post
