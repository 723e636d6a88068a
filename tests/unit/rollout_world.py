"""Builders for the rollout planner's table tests: devices, models, rollouts, and a
tiny in-memory stand-in for the API server and the devices (apply the planner's
writes, let devices report)."""

from __future__ import annotations

import datetime
from typing import Any

from edgefleet.api.edgedevice import CurrentWorkload, EdgeDevice
from edgefleet.api.inferencemodel import InferenceModel
from edgefleet.api.rollout import Rollout
from edgefleet.domain.rollout import Decision, World, decide

T0 = datetime.datetime(2026, 11, 24, 4, 0, 0, tzinfo=datetime.UTC)
AMD = "sha256:" + "a" * 64
ARM = "sha256:" + "b" * 64
INDEX = "sha256:" + "c" * 64
OLD = "sha256:" + "d" * 64


def ts(seconds: float) -> str:
    return (T0 + datetime.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def model(version: str = "2.0.0", platforms=("linux/amd64", "linux/arm64"), ready=True):
    images = {"linux/amd64": AMD, "linux/arm64": ARM}
    return InferenceModel.model_validate(
        {
            "metadata": {"name": "det", "namespace": "ns", "generation": 1},
            "spec": {
                "version": version,
                "platforms": list(platforms),
                "source": {"url": {"url": "https://m.example/m.onnx", "sha256": "e" * 64}},
                "config": {"A": "model", "B": "model"},
            },
            "status": {
                "observedGeneration": 1,
                "repository": "127.0.0.1:5000/edgefleet/models/ns/det",
                "indexDigest": INDEX,
                "images": [{"platform": p, "digest": images[p], "sizeBytes": 1} for p in platforms],
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "reason": "Reconciled",
                        "lastTransitionTime": ts(-100),
                    }
                ],
            },
        }
    )


def device(name: str, *, site="berlin", platform="linux/amd64", online=True, suspended=False):
    return EdgeDevice.model_validate(
        {
            "metadata": {"name": name, "namespace": "ns", "labels": {"site": site}},
            "spec": {"platform": platform, "suspended": suspended},
            "status": {
                "conditions": [
                    {
                        "type": "Online",
                        "status": "True" if online else "False",
                        "reason": "Polling",
                        "lastTransitionTime": ts(-100),
                    }
                ]
            },
        }
    )


def rollout(name: str = "r", **spec: Any) -> Rollout:
    body: dict[str, Any] = {
        "model": {"name": "det", "version": "2.0.0"},
        "selector": {"matchLabels": {"site": "berlin"}},
        "healthGate": {"minHealthyDuration": "10s"},
        "maxUnavailable": "100%",
        **spec,
    }
    annotations = body.pop("annotations", {})
    return Rollout.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": "ns",
                "uid": f"uid-{name}",
                "generation": 1,
                "annotations": annotations,
                "creationTimestamp": ts(0),
            },
            "spec": body,
        }
    )


class Fleet:
    """Devices as the API server would hold them, and a rollout whose status is kept."""

    def __init__(self, devices: list[EdgeDevice], ro: Rollout, mdl: InferenceModel | None):
        self.devices = {d.metadata.name: d for d in devices}
        self.ro = ro
        self.model = mdl
        self.rivals: list[Rollout] = []
        self.writes: dict[str, int] = {}

    def step(self, at: float) -> Decision:
        d = decide(
            World(self.ro, self.model, list(self.devices.values()), self.rivals, T0 + _s(at))
        )
        for w in d.writes:
            self.writes[w.name] = self.writes.get(w.name, 0) + 1
            dev = self.devices[w.name]
            status = dev.status.model_copy(
                update={
                    "desired": list(w.desired),
                    "previous": list(w.previous),
                    "desired_revision": w.revision,
                }
            )
            self.devices[w.name] = dev.model_copy(update={"status": status})
        self.ro = self.ro.model_copy(update={"status": d.status})
        return d

    def desired(self, name: str):
        return next((w for w in self.devices[name].status.desired if w.model == "det"), None)

    def report(self, name: str, health: str = "Healthy", p95: float | None = None) -> None:
        """The device runs what it is told and reports ``health``."""
        dev = self.devices[name]
        want = self.desired(name)
        current = []
        if want is not None:
            current = [
                CurrentWorkload(
                    model="det",
                    version=want.version,
                    image_digest=want.image_digest,
                    health=health,
                    p95_latency_ms=p95,
                )
            ]
        self.devices[name] = dev.model_copy(
            update={"status": dev.status.model_copy(update={"current": current})}
        )

    def report_all(self, health: str = "Healthy") -> None:
        for name in self.devices:
            if self.desired(name) is not None:
                self.report(name, health)

    def set_online(self, name: str, online: bool) -> None:
        dev = device(name, online=online)
        self.devices[name] = dev.model_copy(
            update={
                "status": self.devices[name].status.model_copy(
                    update={"conditions": dev.status.conditions}
                )
            }
        )

    def cond(self, type_: str):
        return next(c for c in self.ro.status.conditions if c.type == type_)


def _s(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


CANARY = {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]}}


def small_fleet(n: int = 20, **spec: Any) -> Fleet:
    """``n`` devices (every fourth one arm64) under one rollout of ``model()``."""
    devices = [
        device(f"d{i:02d}", platform="linux/arm64" if i % 4 == 0 else "linux/amd64")
        for i in range(n)
    ]
    return Fleet(devices, rollout(**spec), model())


def assigned(f: Fleet) -> set[str]:
    """The devices told to run version 2.0.0."""
    return {n for n in f.devices if (w := f.desired(n)) is not None and w.version == "2.0.0"}
