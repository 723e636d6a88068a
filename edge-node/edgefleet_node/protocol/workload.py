"""What one device should run: a :class:`Workload` per model, its :class:`Probe`.

A workload names a model version by the digests of its signed image index and of the
platform manifest inside it, the configuration the container gets, and the host
devices mapped into it. The signed desired-state document
(:mod:`~edgefleet_node.protocol.desired`) carries a list of them; the agent's runtimes
start, probe and report them. :func:`config_version` is the version a device reports
for a workload's configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgefleet_node.protocol import wire
from edgefleet_node.protocol.wire import ProtocolError

__all__ = ["Probe", "Workload", "config_version"]

_DIGEST = r"sha256:[0-9a-f]{64}"
_REPOSITORY = r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
_CONFIG_KEY = r"[A-Za-z_][A-Za-z0-9_]{0,62}"


@dataclass(frozen=True)
class Probe:
    """A real inference the device runs before it calls a workload healthy."""

    input_name: str
    shape: tuple[int, ...]
    values: tuple[float, ...]
    output_name: str
    expected: tuple[float, ...]
    tolerance: float

    def to_json(self) -> dict[str, Any]:
        return {
            "inputName": self.input_name,
            "shape": list(self.shape),
            "values": list(self.values),
            "outputName": self.output_name,
            "expected": list(self.expected),
            "tolerance": self.tolerance,
        }

    @classmethod
    def from_json(cls, doc: Any, what: str) -> Probe:
        if not isinstance(doc, dict):
            raise ProtocolError(f"{what} must be an object")
        wire.only(
            doc, what, {"inputName", "shape", "values", "outputName", "expected", "tolerance"}
        )

        def floats(key: str) -> tuple[float, ...]:
            items = wire.req_list(doc, key, what, max_len=4096)
            if not items or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in items
            ):
                raise ProtocolError(f"{what}: {key!r} must be a non-empty list of numbers")
            return tuple(float(v) for v in items)

        shape = wire.req_list(doc, "shape", what, max_len=8)
        if not shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 65536 for d in shape
        ):
            raise ProtocolError(f"{what}: 'shape' must be a non-empty list of sizes")
        tolerance = wire.opt_float(doc, "tolerance", what, hi=1e6)
        return cls(
            wire.req_str(doc, "inputName", what, max_len=128),
            tuple(shape),
            floats("values"),
            wire.req_str(doc, "outputName", what, max_len=128),
            floats("expected"),
            1e-3 if tolerance is None else tolerance,
        )


def config_version(config: Mapping[str, str]) -> str:
    """The version a device reports for a merged configuration: a hash of its content."""
    return "sha256:" + wire.sha256_hex(wire.canonical(dict(config)))


@dataclass(frozen=True)
class Workload:
    """One model the device should run (one per InferenceModel)."""

    name: str  # the InferenceModel's name; unique within a document
    version: str  # the model version
    repository: str  # repository path, pulled through the gateway's /v2/
    index_digest: str
    manifest_digest: str  # the platform manifest inside the index, for this device
    platform: str
    probe: Probe | None = None
    config: Mapping[str, str] = field(default_factory=dict)
    host_devices: tuple[str, ...] = ()  # e.g. /dev/video0; mapped into the container
    rollout: str | None = None

    @property
    def config_version(self) -> str:
        return config_version(self.config)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "repository": self.repository,
            "indexDigest": self.index_digest,
            "manifestDigest": self.manifest_digest,
            "platform": self.platform,
            "config": dict(self.config),
            "hostDevices": list(self.host_devices),
        }
        if self.probe is not None:
            doc["probe"] = self.probe.to_json()
        if self.rollout is not None:
            doc["rollout"] = self.rollout
        return doc

    @classmethod
    def from_json(cls, doc: Any, what: str) -> Workload:
        if not isinstance(doc, dict):
            raise ProtocolError(f"{what} must be an object")
        allowed = {"name", "version", "repository", "indexDigest", "manifestDigest", "platform",
                   "config", "hostDevices", "probe", "rollout"}  # fmt: skip
        wire.only(doc, what, allowed)
        config = doc.get("config") or {}
        if not isinstance(config, dict) or len(config) > 256:
            raise ProtocolError(f"{what}: 'config' must be an object of at most 256 entries")
        for key, value in config.items():
            if not isinstance(value, str) or len(value) > 4096:
                raise ProtocolError(f"{what}: config value {key!r} must be a string")
            wire.req_str({"k": key}, "k", f"{what}: config key", pattern=_CONFIG_KEY)
        devices = wire.req_list(doc, "hostDevices", what, max_len=16)
        for path in devices:
            if not isinstance(path, str) or not path.startswith("/dev/") or ".." in path:
                raise ProtocolError(f"{what}: host device {path!r} must be a path under /dev/")
        probe = doc.get("probe")
        return cls(
            name=wire.check_name(wire.req_str(doc, "name", what, max_len=63), f"{what} name"),
            version=wire.req_str(doc, "version", what, max_len=64),
            repository=wire.req_str(doc, "repository", what, max_len=255, pattern=_REPOSITORY),
            index_digest=wire.req_str(doc, "indexDigest", what, max_len=71, pattern=_DIGEST),
            manifest_digest=wire.req_str(doc, "manifestDigest", what, max_len=71, pattern=_DIGEST),
            platform=wire.req_str(doc, "platform", what, max_len=32, pattern=r"linux/[a-z0-9/]+"),
            probe=None if probe is None else Probe.from_json(probe, f"{what} probe"),
            config=dict(config),
            host_devices=tuple(devices),
            rollout=wire.opt_str(doc, "rollout", what),
        )
