"""A watch cache of EdgeDevices: list once, then watch; no GET per device request.

The gateway answers every device request from this cache. It lists the EdgeDevices
(of all namespaces, or of the ones configured), then follows a watch from the list's
``resourceVersion`` with bookmarks; an expired version (410) or a broken stream lists
again. Each change wakes whoever waits on that device (:meth:`DeviceCache.changed`:
the long-polls) and calls the registered listeners (lock-out, status writer), so a
desired-state change or a suspension reaches the device at once. An object that does
not validate is kept out of the cache (the device is refused), logged, and handed to
the invalid-object listeners (the status writer: ``Stalled``, ``InvalidSpec``). Objects are
kept without ``metadata.managedFields`` (nothing here reads them; they were ~40 % of a
cached device's memory).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pydantic
import structlog

from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.api.meta import GROUP, VERSION
from edgefleet.clients.kube import KubeClient, KubeError

__all__ = ["DeviceCache", "DeviceKey", "InvalidListener", "Listener"]

log = structlog.get_logger("edgefleet.gateway.cache")

DeviceKey = tuple[str, str]  # (namespace, name)
Listener = Callable[[DeviceKey, EdgeDevice | None, EdgeDevice | None], None]
#: Called with an object the API server holds but the models refuse, and why.
InvalidListener = Callable[[DeviceKey, dict[str, Any], pydantic.ValidationError], None]


class DeviceCache:
    """EdgeDevices by (namespace, name), kept current by list + watch."""

    def __init__(self, kube: KubeClient, namespaces: tuple[str, ...] = ()) -> None:
        self._kube = kube
        self._namespaces = namespaces or ("",)
        self._devices: dict[DeviceKey, EdgeDevice] = {}
        self._events: dict[DeviceKey, asyncio.Event] = {}
        self._listeners: list[Listener] = []
        self._invalid_listeners: list[InvalidListener] = []
        self._synced: dict[str, bool] = {}
        self.ready = asyncio.Event()
        self.changed_at: dict[DeviceKey, float] = {}  # monotonic time of the last change

    def get(self, namespace: str, name: str) -> EdgeDevice | None:
        return self._devices.get((namespace, name))

    def __len__(self) -> int:
        return len(self._devices)

    def device_keys(self) -> list[DeviceKey]:
        return list(self._devices)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_invalid_listener(self, listener: InvalidListener) -> None:
        """Be told of objects kept out of the cache because the models refuse them
        (the status writer records them as ``Stalled``, reason ``InvalidSpec``)."""
        self._invalid_listeners.append(listener)

    def event(self, key: DeviceKey) -> asyncio.Event:
        """An event set at the next change of ``key`` (take it before checking state)."""
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = asyncio.Event()
        return ev

    def wake(self, key: DeviceKey) -> None:
        """Wake whoever waits on ``key`` without a change (they re-check their own state)."""
        ev = self._events.pop(key, None)
        if ev is not None:
            ev.set()

    def wake_all(self) -> None:
        for key in list(self._events):
            self.wake(key)

    async def changed(self, key: DeviceKey, timeout: float) -> bool:
        """Wait until ``key`` changes; ``False`` on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self.event(key).wait()
        except TimeoutError:
            return False
        return True

    def _path(self, namespace: str) -> str:
        if namespace:
            return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/edgedevices"
        return f"/apis/{GROUP}/{VERSION}/edgedevices"

    def _put(self, raw: dict[str, Any] | None, key: DeviceKey) -> None:
        old = self._devices.get(key)
        new: EdgeDevice | None = None
        if raw is not None:
            meta = raw.get("metadata")
            if isinstance(meta, dict) and "managedFields" in meta:
                # Never read here, and ~40 % of a cached device's memory (client-go's
                # informers strip them too): 10k devices, ~125 MB.
                raw = {**raw, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
            try:
                new = EdgeDevice.model_validate(raw)
            except pydantic.ValidationError as exc:
                log.warning(
                    "EdgeDevice does not validate; refusing it",
                    namespace=key[0],
                    name=key[1],
                    errors=exc.error_count(),
                )
                for on_invalid in self._invalid_listeners:
                    on_invalid(key, raw, exc)
        if new is None:
            self._devices.pop(key, None)
        else:
            self._devices[key] = new
        self.changed_at[key] = time.monotonic()
        self.wake(key)
        for listener in self._listeners:
            listener(key, old, new)

    @staticmethod
    def _key(raw: dict[str, Any]) -> DeviceKey:
        meta = raw.get("metadata") or {}
        return str(meta.get("namespace", "")), str(meta.get("name", ""))

    async def _list(self, namespace: str) -> str:
        doc = await self._kube.list(self._path(namespace))
        seen: set[DeviceKey] = set()
        for raw in doc.get("items", []):
            key = self._key(raw)
            seen.add(key)
            current = self._devices.get(key)
            rv = (raw.get("metadata") or {}).get("resourceVersion")
            if current is None or current.metadata.resource_version != rv:
                self._put(raw, key)
        for key in [k for k in self._devices if (not namespace or k[0] == namespace)]:
            if key not in seen:
                self._put(None, key)
        return str(doc["metadata"]["resourceVersion"])

    async def _follow(self, namespace: str) -> None:
        backoff = 0.5
        while True:
            try:
                rv = await self._list(namespace)
                self._synced[namespace] = True
                if all(self._synced.get(n) for n in self._namespaces):
                    self.ready.set()
                backoff = 0.5
                while True:
                    async for event in self._kube.watch(self._path(namespace), rv):
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            raise KubeError(int(obj.get("code", 500)), "WatchError", str(obj))
                        rv = str((obj.get("metadata") or {}).get("resourceVersion", rv))
                        if kind in ("ADDED", "MODIFIED"):
                            self._put(obj, self._key(obj))
                        elif kind == "DELETED":
                            self._put(None, self._key(obj))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "EdgeDevice watch broke; listing again",
                    namespace=namespace or "*",
                    error=str(exc)[:300],
                    retry_in=backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def run(self) -> None:
        """Keep the cache current until cancelled."""
        async with asyncio.TaskGroup() as group:
            for namespace in self._namespaces:
                group.create_task(self._follow(namespace))
