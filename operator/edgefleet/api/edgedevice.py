"""EdgeDevice: one device in the fleet, its declared platform and its observed state.

Two writers share ``status``: the rollout controller writes ``desired`` and the
gateway writes what the device reports (``current``, ``facts``, ``lastSeen``, most
conditions), each with its own server-side-apply field manager.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from edgefleet.api.inferencemodel_parts import Probe
from edgefleet.api.meta import (
    API_VERSION,
    ApiModel,
    ConfigValues,
    ObjectMeta,
    ObjectStatus,
    Platform,
    cel,
)

__all__ = [
    "CurrentWorkload",
    "DesiredWorkload",
    "DeviceFacts",
    "EdgeDevice",
    "EdgeDeviceSpec",
    "EdgeDeviceStatus",
    "Enrollment",
    "PreviousWorkload",
]

DIGEST = r"^sha256:[a-f0-9]{64}$"


class EdgeDeviceSpec(ApiModel):
    """What the device is and how it should be treated."""

    platform: Platform
    """Platform of the device, e.g. linux/arm64; images are chosen by it."""
    accelerator: Literal["None", "NvidiaGpu", "EdgeTpu", "Npu"] = "None"
    """Accelerator the device offers to workloads."""
    suspended: bool = False
    """A suspended device gets no new workloads and is locked out of the gateway."""
    config: ConfigValues = Field(default_factory=dict)
    """Device-level configuration values (highest precedence)."""


class Enrollment(ApiModel):
    """The device's identity, recorded at enrolment and renewal (gateway)."""

    certificate_serial: str = Field(max_length=64, pattern=r"^[0-9a-f]{1,64}$")
    """Serial of the client certificate the gateway accepts (hex); any other is refused."""
    not_after: str = Field(max_length=64)
    """When that certificate expires (RFC 3339)."""
    previous_serial: str | None = Field(default=None, max_length=64, pattern=r"^[0-9a-f]{1,64}$")
    """Serial of the certificate a renewal replaced, accepted until the device uses the new one."""
    instance_id: str | None = Field(default=None, max_length=32, pattern=r"^[0-9a-f]{32}$")
    """Random id of the agent installation that enrolled; another one is flagged."""
    enrolled_at: str | None = Field(default=None, max_length=64)
    """When the device enrolled (RFC 3339)."""
    revoked: bool = False
    """Set by `edgefleet device revoke`: the certificate is refused until a new enrolment."""


class DesiredWorkload(ApiModel):
    """A model image the rollout controller wants the device to run (one per model)."""

    model: str = Field(max_length=63)
    """InferenceModel name (unique within the list)."""
    version: str = Field(max_length=64)
    """Model version."""
    rollout: str | None = Field(default=None, max_length=253)
    """Rollout that assigned it."""
    repository: str = Field(max_length=255)
    """Registry repository of the image (pulled through the gateway's /v2/)."""
    index_digest: str = Field(pattern=DIGEST)
    """Digest of the multi-platform image index."""
    image_digest: str = Field(pattern=DIGEST)
    """Digest of the platform manifest for this device's platform."""
    probe: Probe | None = None
    """The health probe the device runs before it calls the workload healthy (the
    InferenceModel's, the same type and rules)."""
    config: ConfigValues = Field(default_factory=dict)
    """Configuration merged from the model and the rollout (the device's own values are
    layered on top by the gateway)."""
    host_devices: list[
        Annotated[str, Field(max_length=128, pattern=r"^/dev/[A-Za-z0-9/_.-]+$")]
    ] = Field(default_factory=list, max_length=16)
    """Host devices the model needs, mapped into its container."""


class PreviousWorkload(ApiModel):
    """What a model's desired entry was before a rollout replaced it (rollout controller).

    Written in the same apply as the new desired entry, so an abort can always restore
    it: ``workload`` absent means the model was not on the device before.
    """

    model: str = Field(max_length=63)
    """InferenceModel name."""
    rollout: str = Field(max_length=253)
    """The rollout that replaced it."""
    workload: DesiredWorkload | None = None
    """The replaced desired entry; absent when the device did not run the model."""


class CurrentWorkload(ApiModel):
    """A workload the device reports it runs (gateway)."""

    model: str = Field(max_length=63)
    """InferenceModel name."""
    version: str = Field(max_length=64)
    """Model version."""
    image_digest: str = Field(pattern=DIGEST)
    """Digest of the platform manifest running."""
    health: Literal["Unknown", "Starting", "Healthy", "Unhealthy"] = "Unknown"
    """Probe result."""
    config_version: str | None = Field(default=None, max_length=128)
    """Hash of the merged configuration applied."""
    requests: int | None = Field(default=None, ge=0)
    """Inference requests served since the workload started."""
    errors: int | None = Field(default=None, ge=0)
    """Failed inference requests since the workload started."""
    p95_latency_ms: float | None = Field(default=None, ge=0)
    """p95 inference latency the device measured."""


class DeviceFacts(ApiModel):
    """Facts the agent reports about its device."""

    architecture: str | None = Field(default=None, max_length=32)
    os: str | None = Field(default=None, max_length=128)
    memory_bytes: int | None = Field(default=None, ge=0)
    disk_free_bytes: int | None = Field(default=None, ge=0)
    agent_version: str | None = Field(default=None, max_length=64)


class EdgeDeviceStatus(ObjectStatus):
    """Observed state of the device.

    Conditions: Enrolled, Online, Ready, UpdateFailed, DuplicateIdentity, Reconciling,
    Stalled. ``desired``, ``desiredRevision``, ``desiredVersion`` and ``previous`` belong
    to the rollout controller; the
    rest to the gateway (server-side apply, one field manager each).
    """

    enrollment: Enrollment | None = None
    """Identity recorded at enrolment."""
    desired: list[DesiredWorkload] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["model"],
        },
    )
    """What the rollout controller wants the device to run, one entry per model."""
    desired_revision: int | None = Field(default=None, ge=0)
    """Increases with every change of ``desired`` (the desired-state document version)."""
    desired_version: str | None = Field(default=None, max_length=256)
    """Summary for printer columns: model=version of each desired workload."""
    previous: list[PreviousWorkload] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["model"],
        },
    )
    """Per model, the desired entry the assigning rollout replaced (for rollback)."""
    current: list[CurrentWorkload] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["model"],
        },
    )
    """What the device reports it runs."""
    current_version: str | None = Field(default=None, max_length=256)
    """Summary for printer columns: model=version of each running workload."""
    applied_document: int | None = Field(default=None, ge=0)
    """The desired-state document version the device last realised."""
    facts: DeviceFacts | None = None
    """What the device reports about itself."""
    last_seen: str | None = Field(default=None, max_length=64)
    """Last contact with the gateway (RFC 3339, coarse: see docs/gateway.md)."""
    report_seq: int | None = Field(default=None, ge=0)
    """Sequence number of the newest device report applied."""


class EdgeDevice(ApiModel):
    """A device in the fleet."""

    KIND: ClassVar[str] = "EdgeDevice"
    PLURAL: ClassVar[str] = "edgedevices"

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.metadata.name.size() <= 63",
                    "an EdgeDevice name is at most 63 characters (it becomes a certificate"
                    " common name and a label value)",
                )
            ]
        }
    )

    api_version: Literal["edgefleet.io/v1alpha1"] = API_VERSION
    kind: Literal["EdgeDevice"] = "EdgeDevice"
    metadata: ObjectMeta
    spec: EdgeDeviceSpec
    status: EdgeDeviceStatus | None = Field(
        default=None, json_schema_extra={"default": {"observedGeneration": 0}}
    )
    """Defaulted to observedGeneration 0 by the API server, so kstatus (Flux's health
    checks) reads an object no controller has looked at yet as InProgress, never Current."""

    def model_post_init(self, context: Any, /) -> None:
        if len(self.metadata.name) > 63:
            raise ValueError("an EdgeDevice name is at most 63 characters")
