"""A fake fleet for rollout tests: EdgeDevices whose status a test-side thread writes
the way the device gateway would, for devices that obey instantly or after a delay.

**What it stands in for**: the device gateway plus the agents behind it (the real ones
are ``edgefleet.gateway`` and ``edgefleet_node.agent``; ``testing/simdevice.py`` will
run simulated agents against the real gateway). Everything else is real: the API
server, the CRDs, the operator process and its rollout controller. The fleet watches
the EdgeDevices of one namespace; when a device's ``status.desired`` changes it
waits ``delay`` seconds and server-side applies, with the gateway's field manager
``edgefleet-gateway``, what a device would report: ``current`` (the new digest,
Healthy; or, when the test's ``outcome`` says the probe fails, the previous workload
still running plus ``UpdateFailed=True`` — the agent rolls back by itself), ``Online``,
``Ready``, ``appliedDocument``. Offline devices (:meth:`FakeFleet.set_online`) report
nothing until they come back, then catch up.
"""

from __future__ import annotations

import contextlib
import datetime
import heapq
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from kubernetes import client, watch

from edgefleet.testing.lifecycle import Harness

__all__ = ["GATEWAY_MANAGER", "FakeFleet", "Outcome"]

GATEWAY_MANAGER = "edgefleet-gateway"
GROUP, VERSION, PLURAL = "edgefleet.io", "v1alpha1", "edgedevices"
_APPLY = "application/apply-patch+yaml"

#: What a device does with a desired workload: run it healthy, or fail its probe.
Outcome = Literal["Healthy", "ProbeFailed", "Unhealthy"]


def _now() -> str:
    return (
        datetime.datetime.now(datetime.UTC)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z")
    )


@dataclass
class _Device:
    name: str
    online: bool = True
    running: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> current entry
    seen_revision: int = 0
    failed: tuple[str, str] | None = None  # UpdateFailed (reason, message)
    notified_at: dict[int, float] = field(default_factory=dict)  # revision -> monotonic
    ready_at: dict[int, float] = field(default_factory=dict)


class FakeFleet(Harness):
    """Devices in one namespace that follow their desired state (see module docstring)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        *,
        delay: float = 0.0,
        outcome: Callable[[str, dict[str, Any]], Outcome] = lambda name, workload: "Healthy",
        p95_latency_ms: float | None = 5.0,
        workers: int = 1,
        label_selector: str | None = None,
    ) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.delay = delay
        self.outcome = outcome
        self.p95 = p95_latency_ms
        self.devices: dict[str, _Device] = {}
        self._lock = threading.Lock()
        self._due: list[tuple[float, str]] = []
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watch: watch.Watch | None = None
        self.reports = 0
        self.label_selector = label_selector  # watch only these devices (a shard)
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None

    # -- devices -----------------------------------------------------------------
    def adopt(self, names: Iterable[str]) -> None:
        """Follow devices that already exist (another process created them)."""
        with self._lock:
            for name in names:
                self.devices.setdefault(name, _Device(name))

    def create(self, names: Iterable[str], labels: dict[str, str], platform: str) -> None:
        """Create EdgeDevices (spec only, as a user would) and report them online."""
        for name in names:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "EdgeDevice",
                "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
                "spec": {"platform": platform},
            }
            self.objects.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body
            )
            with self._lock:
                self.devices[name] = _Device(name)
            self._report(name)

    def set_online(self, name: str, online: bool) -> None:
        with self._lock:
            self.devices[name].online = online
        self._report(name)
        if online:
            self._schedule(name, 0.0)

    # -- running -----------------------------------------------------------------
    def start(self) -> None:
        for target in (self._watcher, self._actor):
            thread = threading.Thread(target=target, daemon=True, name=f"fakefleet-{target}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]
        for thread in self._threads:
            thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _watcher(self) -> None:
        since: str | None = None  # resume where the last watch ended (no re-list)
        while not self._stop.is_set():
            self._watch = watch.Watch()  # type: ignore[no-untyped-call]
            extra: dict[str, str] = {}
            if self.label_selector:
                extra["label_selector"] = self.label_selector
            if since:
                extra["resource_version"] = since
            try:
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    self.objects.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    timeout_seconds=30,
                    **extra,
                ):
                    if self._stop.is_set():
                        return
                    if event.get("type") == "ERROR":  # e.g. 410 Gone: list again
                        since = None
                        break
                    self._events.put(event["object"])
                    since = event["object"]["metadata"].get("resourceVersion") or since
            except client.ApiException:
                since = None
                self._stop.wait(0.5)
            except Exception:  # a dropped connection: watch again, shortly
                self._stop.wait(0.5)

    def _schedule(self, name: str, delay: float) -> None:
        with self._lock:
            heapq.heappush(self._due, (time.monotonic() + delay, name))

    def _actor(self) -> None:
        desired: dict[str, dict[str, Any]] = {}
        while not self._stop.is_set():
            with contextlib.suppress(queue.Empty):
                obj = self._events.get(timeout=0.05)
                while True:
                    name = obj["metadata"]["name"]
                    status = obj.get("status") or {}
                    revision = int(status.get("desiredRevision") or 0)
                    dev = self.devices.get(name)
                    if dev is not None and revision > dev.seen_revision:
                        dev.seen_revision = revision
                        dev.notified_at.setdefault(revision, time.monotonic())
                        desired[name] = status
                        self._schedule(name, self.delay)
                    obj = self._events.get_nowait()
            now = time.monotonic()
            while True:
                with self._lock:
                    if not self._due or self._due[0][0] > now:
                        break
                    _, name = heapq.heappop(self._due)
                if name in desired and self.devices[name].online:
                    if self._pool is not None:
                        self._pool.submit(self._follow, name, desired[name])
                    else:
                        self._follow(name, desired[name])

    def _follow(self, name: str, status: dict[str, Any]) -> None:
        dev = self.devices[name]
        revision = int(status.get("desiredRevision") or 0)
        wanted = {w["model"]: w for w in status.get("desired") or []}
        dev.failed = None
        for model in list(dev.running):
            if model not in wanted:
                del dev.running[model]
        for model, workload in wanted.items():
            have = dev.running.get(model)
            if have is not None and have["imageDigest"] == workload["imageDigest"]:
                continue
            verdict = self.outcome(name, workload)
            if verdict == "ProbeFailed":
                dev.failed = ("ProbeFailed", f"{model} {workload['version']}: probe failed")
                continue
            entry = {
                "model": model,
                "version": workload["version"],
                "imageDigest": workload["imageDigest"],
                "health": "Unhealthy" if verdict == "Unhealthy" else "Healthy",
            }
            if self.p95 is not None:
                entry["p95LatencyMs"] = self.p95
            dev.running[model] = entry
        self._report(name, applied=revision)
        dev.ready_at.setdefault(revision, time.monotonic())  # the report is in

    def _report(self, name: str, applied: int | None = None) -> None:
        dev = self.devices[name]
        at = _now()
        healthy = all(w["health"] == "Healthy" for w in dev.running.values())
        conditions = [
            {"type": "Online", "status": "True" if dev.online else "False",
             "reason": "Polling" if dev.online else "HeartbeatMissed",
             "message": "", "lastTransitionTime": at},
            {"type": "Ready", "status": "True" if healthy and dev.failed is None else "False",
             "reason": "Reconciled" if healthy else "WorkloadUnhealthy",
             "message": "", "lastTransitionTime": at},
            {"type": "UpdateFailed", "status": "True" if dev.failed else "False",
             "reason": dev.failed[0] if dev.failed else "NoFailure",
             "message": dev.failed[1] if dev.failed else "", "lastTransitionTime": at},
        ]  # fmt: skip
        current = sorted(dev.running.values(), key=lambda w: str(w["model"]))
        status: dict[str, Any] = {"conditions": conditions, "current": current}
        if current:
            status["currentVersion"] = ",".join(f"{w['model']}={w['version']}" for w in current)
        if applied is not None:
            status["appliedDocument"] = applied << 32
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "EdgeDevice",
            "metadata": {"name": name, "namespace": self.namespace},
            "status": status,
        }
        with self._lock:
            self.reports += 1  # attempts, so the API server's count can be split by writer
        self.objects.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            body,
            field_manager=GATEWAY_MANAGER,
            force=True,
            _content_type=_APPLY,
        )
