"""The runtime seam: what the agent asks of a container runtime, and what it gets back.

The agent (:mod:`~edgefleet_node.agent.sync`) owns verification and the activation
order; a runtime only ever sees images whose every blob was digest- and
signature-checked (:class:`VerifiedImage`). Implementations: the Docker one
(``docker_runtime``, loads the verified blobs, never pulls) and
:class:`~edgefleet_node.agent.simulated.SimulatedRuntime` (no containers, for scale
tests).

Additions to the decided interface, and why:

- :class:`VerifiedImage` also carries the manifest's blob path and the config/layer
  digests and layer media types, so a runtime can assemble a ``docker load`` archive
  without re-reading or re-parsing the manifest.
- :class:`Instance` carries the workload name, manifest digest, version and config
  version, so that :meth:`Runtime.running` after an agent restart says enough for the
  agent to adopt what runs (Docker keeps them as container labels, see
  :data:`LABELS`).
- Failures are raised as :class:`RuntimeFailure` with a CamelCase ``reason`` (the
  agent reports it as the reason of ``UpdateFailed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from edgefleet_node.protocol.desired import Probe, Workload
from edgefleet_node.protocol.report import WorkloadMetrics

__all__ = [
    "LABELS",
    "Instance",
    "ProbeResult",
    "Runtime",
    "RuntimeFailure",
    "VerifiedImage",
]

#: Container labels a runtime stores so :meth:`Runtime.running` can rebuild an Instance.
LABELS: Final = {
    "workload": "io.edgefleet.workload",
    "manifest_digest": "io.edgefleet.manifest-digest",
    "version": "io.edgefleet.version",
    "config_version": "io.edgefleet.config-version",
    "port": "io.edgefleet.port",
}


class RuntimeFailure(Exception):  # noqa: N818 -- a failure reported as a condition
    """A runtime step failed; ``reason`` is the CamelCase condition reason
    (e.g. ``LoadFailed``, ``StartFailed``, ``DeviceMissing``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedImage:
    """An image whose index, manifest, signature, config and layers were all checked.

    Paths point into the agent's content-addressed store (``blobs/sha256/<hex>``);
    a runtime reads them and must not modify or delete them.
    """

    manifest_digest: str
    manifest_path: Path
    config_digest: str
    config_path: Path
    layer_digests: tuple[str, ...]
    layer_paths: tuple[Path, ...]
    layer_media_types: tuple[str, ...]
    platform: str  # e.g. linux/arm64


@dataclass(frozen=True)
class Instance:
    """One started workload (a container, or a simulated one)."""

    id: str  # runtime-specific (container id)
    workload: str  # Workload.name
    manifest_digest: str
    version: str
    config_version: str
    port: int | None = None  # EDGEFLEET_PORT the inference server listens on


@dataclass(frozen=True)
class ProbeResult:
    healthy: bool
    reason: str = ""  # CamelCase when not healthy: ProbeFailed, Exited, HealthTimeout, ...
    message: str = ""
    details: Mapping[str, str] = field(default_factory=dict)


class Runtime(Protocol):
    def prepare(self, workload: Workload, image: VerifiedImage) -> None:
        """Make the verified image available (Docker: load from the blobs; never pull)."""

    def start(self, workload: Workload, config: Mapping[str, str]) -> Instance:
        """Start the workload beside any old one (new port); ``config`` is its environment.
        Host devices in ``workload.host_devices`` are mapped in."""

    def probe(self, instance: Instance, probe: Probe | None, deadline: float) -> ProbeResult:
        """HTTP ``/healthz`` and a real inference of ``probe.values`` until healthy or
        ``deadline`` (``time.monotonic()``) passes; an exited instance is unhealthy."""

    def stop(self, instance: Instance) -> None:
        """Stop and remove the instance; stopping a gone one is not an error."""

    def running(self) -> list[Instance]:
        """What runs now (after an agent restart: what to adopt)."""

    def metrics(self, instance: Instance) -> WorkloadMetrics:
        """Cumulative counters from the workload's ``/metrics``."""

    def collect(self, keep: set[str]) -> None:
        """Remove images whose manifest digest is not in ``keep``."""
