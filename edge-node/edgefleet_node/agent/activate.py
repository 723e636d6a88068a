"""Activating a desired state: all workloads of a document, or none of them.

``runtime.json`` records what runs (committed) and the images kept for rollback.
For a new document: host devices are checked, every changed workload's image is
resolved and verified, the whole update is preflighted, the blobs are downloaded;
then all new instances are started beside the old ones and probed. Only when every new
one is healthy is the new set committed to ``runtime.json`` and the old instances
stopped; on any failure every new instance is stopped and the old ones keep running.
The previous image of each workload is kept for rollback (:mod:`.retain`); the rest
is collected.

:meth:`Activator.heal` runs every report interval: a committed workload that exited is
started again from its prepared image; one whose host device is gone (a camera
unplugged) is not restarted and is reported (:attr:`Activator.faults`, ``DeviceMissing``
with the path) until the device is back.

After a restart, :meth:`Activator.adopt` takes over what the runtime reports as
running: committed instances are adopted; an uncommitted duplicate of a committed
workload (a crash mid-update) is stopped; anything else keeps running until a
document says otherwise (a device never stops a healthy workload for lack of state).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edgefleet_node.agent import pull, retain, store
from edgefleet_node.agent.blobs import Downloaded
from edgefleet_node.agent.client import GatewayClient
from edgefleet_node.agent.runtime import Instance, Runtime, RuntimeFailure, VerifiedImage
from edgefleet_node.protocol.desired import DesiredState, Workload

__all__ = ["Activator", "Current", "Fault", "Settings", "Timings", "UpdateFailedError"]


class UpdateFailedError(Exception):
    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class Settings:
    stall_timeout: float = 60.0
    probe_timeout: float = 120.0
    disk_reserve: int = 64 * 1024 * 1024
    dev_root: str = "/"  # where /dev/... is looked up (config dev_root; tests)


@dataclass
class Timings:
    """Seconds spent in each phase of the last activation (benchmark)."""

    resolve: float = 0.0  # index, manifest, signature
    download: float = 0.0
    start: float = 0.0
    probe: float = 0.0
    bytes_received: int = 0


@dataclass(frozen=True)
class Current:
    workload: Workload
    instance: Instance


@dataclass(frozen=True)
class Fault:
    """Why a committed workload does not run as it should (found by ``heal``)."""

    reason: str  # DeviceMissing, StartFailed, ProbeFailed, ...
    message: str


@dataclass
class Activator:
    state: store.StateDir
    runtime: Runtime
    settings: Settings = field(default_factory=Settings)
    current: dict[str, Current] = field(default_factory=dict)
    previous: dict[str, str] = field(default_factory=dict)  # workload -> rollback image
    version: int | None = None  # the desired-state version ``current`` realises
    timings: Timings = field(default_factory=Timings)
    faults: dict[str, Fault] = field(default_factory=dict)  # workload -> fault (heal)
    measure: Callable[[], pull.Resources] | None = None  # free disk/memory (tests: a stand-in)

    # -- persistence -------------------------------------------------------------
    def load(self) -> None:
        doc = store.read_json(self.state.runtime) or {}
        self.version = doc.get("desiredVersion")
        kept = doc.get("previousImages")
        if isinstance(kept, dict):
            self.previous = {str(k): str(v) for k, v in kept.items()}
        else:  # before per-workload records: kept (unnamed) until the next activation
            self.previous = {f"#{i}": str(d) for i, d in enumerate(doc.get("previous", []))}
        self.current = {}
        for item in doc.get("workloads", []):
            workload = Workload.from_json(item["workload"], "runtime.json workload")
            self.current[workload.name] = Current(workload, retain.instance(item["instance"]))

    def _commit(self) -> None:
        store.write_json(
            self.state.runtime,
            {
                "desiredVersion": self.version,
                "previousImages": self.previous,
                "workloads": [
                    {"workload": c.workload.to_json(), "instance": retain.instance_json(c.instance)}
                    for c in self.current.values()
                ],
            },
        )

    def adopt(self) -> list[Instance]:
        """Reconcile the record with what runs; the instances found missing."""
        self.load()
        running = {i.id: i for i in self.runtime.running()}
        committed = {c.instance.id for c in self.current.values()}
        for inst in running.values():
            if inst.id not in committed and inst.workload in self.current:
                self.runtime.stop(inst)  # a crash mid-update left a second one
        return [c.instance for c in self.current.values() if c.instance.id not in running]

    def missing_devices(self, workload: Workload) -> list[str]:
        root = self.settings.dev_root
        return [
            d
            for d in workload.host_devices
            if not os.path.exists(os.path.join(root, d.lstrip("/")))
        ]

    def heal(self) -> list[str]:
        """Start again, from the image already prepared, each committed workload that
        no longer runs (it exited or was removed); the names that run again. What keeps
        a workload from running as it should is left in :attr:`faults`."""
        running = {i.id for i in self.runtime.running()}
        healed, faults = [], {}
        for name, cur in list(self.current.items()):
            if gone := self.missing_devices(cur.workload):
                # Unplugged: a restart would fail too. A container that still runs is
                # left running (the device may come back), but it is not healthy.
                faults[name] = Fault(
                    "DeviceMissing",
                    f"workload {name} needs {', '.join(gone)}, which is gone from this device",
                )
                continue
            if cur.instance.id in running:
                continue
            try:
                inst = self.runtime.start(cur.workload, cur.workload.config)
                deadline = time.monotonic() + self.settings.probe_timeout
                result = self.runtime.probe(inst, cur.workload.probe, deadline)
            except RuntimeFailure as exc:
                faults[name] = Fault(exc.reason, f"workload {name} could not restart: {exc}")
                continue
            if not result.healthy:
                self.runtime.stop(inst)
                faults[name] = Fault(
                    result.reason or "ProbeFailed",
                    f"workload {name} restarted but is not healthy: {result.message}",
                )
                continue
            self.current[name] = Current(cur.workload, inst)
            healed.append(name)
        self.faults = faults
        if healed:
            self._commit()
        return healed

    # -- activation --------------------------------------------------------------
    def changed(self, doc: DesiredState) -> list[Workload]:
        out = []
        for w in doc.workloads:
            cur = self.current.get(w.name)
            if (
                cur is None
                or cur.instance.manifest_digest != w.manifest_digest
                or cur.instance.config_version != w.config_version
                or cur.workload.host_devices != w.host_devices
            ):
                out.append(w)
        return out

    def apply(
        self,
        doc: DesiredState,
        client: GatewayClient,
        image_keys: Sequence[bytes],
        resources: Callable[[], pull.Resources] | None = None,
    ) -> bool:
        """Make ``doc`` what runs; ``False`` if nothing had to change. Raises
        :class:`UpdateFailedError` with everything old still running."""
        changed = self.changed(doc)
        removed = [name for name in self.current if name not in {w.name for w in doc.workloads}]
        if not changed and not removed:
            # Same images and config: only names, versions or probes may differ.
            relabelled = {w.name: Current(w, self.current[w.name].instance) for w in doc.workloads}
            if self.version != doc.version or relabelled != self.current:
                self.current, self.version = relabelled, doc.version
                self._commit()
            return False
        self.timings = Timings()
        for w in changed:
            if absent := self.missing_devices(w):
                raise UpdateFailedError(
                    "DeviceMissing",
                    f"workload {w.name} needs {', '.join(absent)}, which this device lacks",
                )
        images = self._fetch(changed, client, image_keys, resources)
        started = self._start_all(changed, images)
        old = [self.current[w.name] for w in changed if w.name in self.current]
        gone = [self.current[name] for name in removed]
        for w, inst in started:
            self.current[w.name] = Current(w, inst)
        for name in removed:
            del self.current[name]
        self.previous = retain.next_previous(
            self.previous,
            {c.workload.name: c.instance.manifest_digest for c in old + gone},
            {n: c.instance.manifest_digest for n, c in self.current.items()},
        )
        self.version = doc.version
        self._commit()
        for c in old + gone:
            self.runtime.stop(c.instance)
        fixed = {w.name for w in changed}  # a new dict: the reporter thread reads it
        self.faults = {n: f for n, f in self.faults.items() if n not in fixed}
        keep = {c.instance.manifest_digest for c in self.current.values()}
        keep |= set(self.previous.values())
        self.runtime.collect(keep)
        retain.collect_blobs(self.state, keep)
        return True

    def _fetch(
        self,
        changed: Sequence[Workload],
        client: GatewayClient,
        image_keys: Sequence[bytes],
        resources: Callable[[], pull.Resources] | None,
    ) -> list[VerifiedImage]:
        t0 = time.monotonic()
        before = client.received
        try:
            resolved = [pull.resolve(client, w, image_keys) for w in changed]
            measure = (
                resources or self.measure or (lambda: pull.Resources.measure(self.state.blobs))
            )
            measured = measure()
            pull.preflight(resolved, self.state, measured, self.settings.disk_reserve)
            t1 = time.monotonic()
            stats = Downloaded()
            images = [
                pull.download(
                    client, r, self.state, stall_timeout=self.settings.stall_timeout, stats=stats
                )
                for r in resolved
            ]
        except pull.PullError as exc:
            raise UpdateFailedError(exc.reason, str(exc), transient=exc.transient) from exc
        self.timings.resolve = t1 - t0
        self.timings.download = time.monotonic() - t1
        # Blob bytes plus the index, manifest and signature documents.
        self.timings.bytes_received = stats.received + client.received - before
        return images

    def _start_all(
        self, changed: Sequence[Workload], images: Sequence[VerifiedImage]
    ) -> list[tuple[Workload, Instance]]:
        started: list[tuple[Workload, Instance]] = []
        t0 = time.monotonic()
        try:
            for w, image in zip(changed, images, strict=True):
                self.runtime.prepare(w, image)
                started.append((w, self.runtime.start(w, w.config)))
            t1 = time.monotonic()
            deadline = time.monotonic() + self.settings.probe_timeout
            for w, inst in started:
                result = self.runtime.probe(inst, w.probe, deadline)
                if not result.healthy:
                    raise RuntimeFailure(
                        result.reason or "ProbeFailed",
                        f"workload {w.name} ({w.manifest_digest}) failed its probe: "
                        f"{result.message}",
                    )
        except RuntimeFailure as exc:
            for _, inst in started:
                self.runtime.stop(inst)
            raise UpdateFailedError(exc.reason, str(exc)) from exc
        except Exception as exc:
            for _, inst in started:
                self.runtime.stop(inst)
            raise UpdateFailedError("RuntimeError", f"{type(exc).__name__}: {exc}") from exc
        self.timings.start = t1 - t0
        self.timings.probe = time.monotonic() - t1
        return started
