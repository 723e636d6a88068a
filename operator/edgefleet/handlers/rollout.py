"""Rollout controller: thin kopf adapters around the pure planner.

kopf's watches feed a cache of EdgeDevices, Rollouts and InferenceModels (one list at
start-up, then every watch event); a single loop runs a pass over every Rollout when
something changed, and at least once a second for the time-based gates (pauses,
``minHealthyDuration``, the progress deadline). A pass is
:func:`edgefleet.domain.rollout.decide` on a snapshot of the cache, then the device
writes (server-side apply, field manager ``edgefleet-rollouts``), then the status —
always written when it differs, also when the pass failed (the failure becomes a
condition) — then the Events. The cache takes every write's answer at once, and never
an older resourceVersion than it holds, so no device is written twice; after a restart
the list at start-up restores the same view from the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
import pydantic
import structlog
from kubernetes import client

from edgefleet.api import GROUP, VERSION
from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.api.inferencemodel import InferenceModel
from edgefleet.api.rollout import Rollout, RolloutStatus
from edgefleet.clients.rolloutapi import RolloutApi
from edgefleet.domain.failures import Failure, classify
from edgefleet.domain.rollout import DeviceWrite, World, decide, report

__all__ = ["WRITERS", "FleetCache", "RolloutController", "register"]

log = structlog.get_logger("edgefleet.rollouts")

Key = tuple[str, str]
_KINDS: dict[str, type[pydantic.BaseModel]] = {
    "edgedevices": EdgeDevice,
    "rollouts": Rollout,
    "inferencemodels": InferenceModel,
}
#: The longest a time-based gate waits past its moment.
TICK = 1.0
#: Concurrent device writes (the API client's connection pool must be at least this).
WRITERS = 8


def _plain(body: Any) -> dict[str, Any]:
    doc = dict(body)
    status = {k: v for k, v in dict(doc.get("status") or {}).items() if k != "kopf"}
    return {
        "apiVersion": doc.get("apiVersion"),
        "kind": doc.get("kind"),
        "metadata": dict(doc.get("metadata") or {}),
        "spec": dict(doc.get("spec") or {}),
        "status": status or None,
    }


def _status_of(body: Any) -> RolloutStatus | None:
    try:
        return RolloutStatus.model_validate(dict(body.get("status") or {}))
    except pydantic.ValidationError:
        return None


def _version(body: Any) -> int:
    text = str(dict(body.get("metadata") or {}).get("resourceVersion") or "0")
    return int(text) if text.isdigit() else 0


class FleetCache:
    """Parsed objects by kind and (namespace, name); safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[Key, Any]] = {k: {} for k in _KINDS}
        self._versions: dict[str, dict[Key, int]] = {k: {} for k in _KINDS}
        #: Rollouts the models refuse: (generation, stored status, the failure).
        self.invalid: dict[Key, tuple[int, RolloutStatus | None, Failure]] = {}

    def put(self, plural: str, body: Any, *, deleted: bool = False) -> bool:
        """Store ``body`` unless an equal or newer version is held; whether it changed."""
        meta = dict(body.get("metadata") or {})
        key = (str(meta.get("namespace") or "default"), str(meta.get("name")))
        version = _version(body)
        with self._lock:
            held = self._versions[plural].get(key, -1)
            if deleted:
                self._objects[plural].pop(key, None)
                self._versions[plural].pop(key, None)
                self.invalid.pop(key, None)
                return True
            if version and version <= held:
                return False
        try:
            parsed = _KINDS[plural].model_validate(_plain(body))
        except pydantic.ValidationError as exc:
            log.warning(
                "object not valid, ignored",
                kind=plural,
                namespace=key[0],
                name=key[1],
                errors=exc.error_count(),
            )
            if plural == "rollouts":
                with self._lock:
                    self.invalid[key] = (
                        int(meta.get("generation") or 0),
                        _status_of(body),
                        classify(exc),
                    )
            return False
        with self._lock:
            if version and version <= self._versions[plural].get(key, -1):
                return False
            self._objects[plural][key] = parsed
            self._versions[plural][key] = version
            if plural == "rollouts":
                self.invalid.pop(key, None)
        return True

    def refused(self) -> list[tuple[Key, int, RolloutStatus | None, Failure]]:
        with self._lock:
            return [(k, *v) for k, v in self.invalid.items()]

    def items(self, plural: str, namespace: str | None = None) -> list[Any]:
        with self._lock:
            return [v for k, v in self._objects[plural].items() if namespace in (None, k[0])]

    def get(self, plural: str, namespace: str, name: str) -> Any:
        with self._lock:
            return self._objects[plural].get((namespace, name))


class RolloutController:
    """Runs passes over every Rollout in the cache."""

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
        # Device writes of one pass go out in parallel (distinct objects).
        self._pool = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="rollout-write")

    def sync(self) -> None:
        """List every kind into the cache (at start-up, before the first pass)."""
        for plural in _KINDS:
            for namespace in self.namespaces or (None,):
                for item in self.api.list(plural, namespace).get("items", []):
                    self.cache.put(plural, item)

    def observe(self, plural: str, event_type: str | None, body: Any) -> None:
        if self.cache.put(plural, body, deleted=event_type == "DELETED"):
            self.wake.set()

    def run_pass(self) -> None:
        for (ns, name), generation, old, failure in self.cache.refused():
            status = report.failed(old, generation=generation, failure=failure, now=self.clock())
            if old is None or old.wire() != status.wire():
                try:
                    self.api.apply_status(ns, name, status)
                except client.ApiException as exc:
                    log.warning("status write failed", namespace=ns, name=name, status=exc.status)
        for ro in self.cache.items("rollouts"):
            if ro.metadata.model_extra and ro.metadata.model_extra.get("deletionTimestamp"):
                continue
            self.reconcile(ro)

    def reconcile(self, ro: Rollout) -> None:
        ns, name = ro.metadata.namespace or "default", ro.metadata.name
        bound = log.bind(namespace=ns, name=name)
        model_name = ro.spec.model.name
        world = World(
            rollout=ro,
            model=self.cache.get("inferencemodels", ns, model_name),
            devices=self.cache.items("edgedevices", ns),
            rivals=[
                r
                for r in self.cache.items("rollouts", ns)
                if r.spec.model.name == model_name and r.metadata.name != name
            ],
            now=self.clock(),
        )
        try:
            decision = decide(world)
        except Exception as exc:  # a failure must still show in status, typed
            failure = classify(exc)
            bound.exception("rollout pass failed", reason=failure.reason)
            status = report.failed(
                ro.status, generation=ro.metadata.generation or 0, failure=failure, now=world.now
            )
            self._write_status(ro, status, bound)
            return
        applied = sum(self._pool.map(lambda w: self._apply(w, bound), decision.writes))
        self._write_status(ro, decision.status, bound)
        for event in decision.events:
            self.api.post_event(ro, event)
        if applied or decision.events:
            bound.info(
                "rollout pass",
                phase=decision.status.phase,
                step=decision.status.current_step,
                writes=applied,
                events=[e.reason for e in decision.events],
            )

    def _apply(self, write: DeviceWrite, bound: Any) -> bool:
        try:
            self.cache.put("edgedevices", self.api.apply_device(write))
        except client.ApiException as exc:
            bound.warning(
                "device write failed, retrying next pass",
                device=write.name,
                write=write.kind,
                status=exc.status,
            )
            return False
        return True

    def _write_status(self, ro: Rollout, status: RolloutStatus, bound: Any) -> None:
        if ro.status is not None and ro.status.wire() == status.wire():
            return
        try:
            self.cache.put(
                "rollouts",
                self.api.apply_status(ro.metadata.namespace or "default", ro.metadata.name, status),
            )
        except client.ApiException as exc:
            bound.warning("status write failed, retrying next pass", status=exc.status)

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

    for plural in _KINDS:

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
