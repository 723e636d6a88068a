"""A runtime without containers, for scale tests: the same agent code, cheap instances.

Instances are records (optionally persisted to a JSON file, so they outlive an agent
restart the way containers do). ``prepare`` still reads every layer of the verified
image (so a test sees that the agent handed over complete, verified blobs); probes
answer per :class:`Behaviour`: healthy by default, failing for chosen manifest digests,
or exiting. Hundreds of agents with this runtime run as threads in one process.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet_node.agent import store
from edgefleet_node.agent.runtime import Instance, ProbeResult, RuntimeFailure, VerifiedImage
from edgefleet_node.protocol.desired import Probe, Workload
from edgefleet_node.protocol.report import WorkloadMetrics

__all__ = ["Behaviour", "SimulatedRuntime"]

_ids = itertools.count(1)


@dataclass
class Behaviour:
    """How simulated workloads behave; change the sets while the agent runs."""

    fail_probe: set[str] = field(default_factory=set)  # manifest digests whose probe fails
    exit_on_start: set[str] = field(default_factory=set)  # ... that exit right away
    fail_prepare: set[str] = field(default_factory=set)
    fail_metrics: set[str] = field(default_factory=set)  # ... whose /metrics fails
    requests_per_probe: int = 1


class SimulatedRuntime:
    def __init__(self, behaviour: Behaviour | None = None, state_file: Path | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self._file = state_file
        self._lock = threading.Lock()
        self._images: dict[str, VerifiedImage] = {}
        self._running: dict[str, Instance] = {}
        self._config: dict[str, dict[str, str]] = {}
        self._requests: dict[str, int] = {}
        self.started: list[Instance] = []  # every instance ever started (tests)
        if state_file is not None:
            doc = store.read_json(state_file) or {}
            for raw in doc.get("running", []):
                inst = Instance(**raw)
                self._running[inst.id] = inst
            self._images = {d: _image_stub(d) for d in doc.get("images", [])}

    def _save(self) -> None:
        if self._file is not None:
            store.write_json(
                self._file,
                {
                    "running": [i.__dict__ for i in self._running.values()],
                    "images": sorted(self._images),
                },
            )

    def prepare(self, workload: Workload, image: VerifiedImage) -> None:
        if image.manifest_digest in self.behaviour.fail_prepare:
            raise RuntimeFailure("LoadFailed", f"simulated load failure for {workload.name}")
        for path in (image.config_path, *image.layer_paths):
            if not path.is_file():
                raise RuntimeFailure("LoadFailed", f"{path} is missing")
        with self._lock:
            self._images[image.manifest_digest] = image
            self._save()

    def start(self, workload: Workload, config: Mapping[str, str]) -> Instance:
        with self._lock:
            if workload.manifest_digest not in self._images:
                raise RuntimeFailure("StartFailed", f"image {workload.manifest_digest} not loaded")
            inst = Instance(
                id=f"sim-{next(_ids)}",
                workload=workload.name,
                manifest_digest=workload.manifest_digest,
                version=workload.version,
                config_version=workload.config_version,
                port=None,
            )
            self._config[inst.id] = dict(config)
            self.started.append(inst)
            if workload.manifest_digest not in self.behaviour.exit_on_start:
                self._running[inst.id] = inst
            self._save()
            return inst

    def probe(self, instance: Instance, probe: Probe | None, deadline: float) -> ProbeResult:
        with self._lock:
            if instance.id not in self._running:
                return ProbeResult(False, "Exited", "the workload exited")
            if instance.manifest_digest in self.behaviour.fail_probe:
                return ProbeResult(False, "ProbeFailed", "simulated: inference answer is wrong")
            self._requests[instance.id] = (
                self._requests.get(instance.id, 0) + self.behaviour.requests_per_probe
            )
            return ProbeResult(True)

    def stop(self, instance: Instance) -> None:
        with self._lock:
            self._running.pop(instance.id, None)
            self._save()

    def running(self) -> list[Instance]:
        with self._lock:
            return list(self._running.values())

    def metrics(self, instance: Instance) -> WorkloadMetrics:
        if instance.manifest_digest in self.behaviour.fail_metrics:
            raise RuntimeFailure("MetricsUnavailable", f"simulated: {instance.workload}/metrics")
        with self._lock:
            return WorkloadMetrics(requests=self._requests.get(instance.id, 0), errors=0)

    def collect(self, keep: set[str]) -> None:
        with self._lock:
            self._images = {d: i for d, i in self._images.items() if d in keep}
            self._save()

    def config_of(self, instance: Instance) -> dict[str, str]:
        return dict(self._config.get(instance.id, {}))

    def images(self) -> set[str]:
        with self._lock:
            return set(self._images)


def _image_stub(digest: str) -> VerifiedImage:
    empty = Path("/nonexistent")
    return VerifiedImage(digest, empty, "", empty, (), (), (), "")
