"""EdgeDevice: one device in the fleet, its declared platform and its observed state.

Two writers share ``status``: the rollout controller writes ``desired`` and the
gateway writes what the device reports (``current``, ``facts``, ``lastSeen``, most
conditions), each with its own server-side-apply field manager.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field

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
    "DeviceFacts",
    "EdgeDevice",
    "EdgeDeviceSpec",
    "EdgeDeviceStatus",
    "Enrollment",
    "Workload",
]


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
    """The device's identity, recorded at enrolment."""

    certificate_serial: str = Field(max_length=64, pattern=r"^[0-9a-f]{1,64}$")
    """Serial of the client certificate the gateway accepts (hex)."""
    not_after: str = Field(max_length=64)
    """When that certificate expires (RFC 3339)."""


class Workload(ApiModel):
    """A model image assigned to or running on the device."""

    model: str = Field(max_length=253)
    """InferenceModel name."""
    version: str = Field(max_length=64)
    """Model version."""
    image_digest: str = Field(pattern=r"^sha256:[a-f0-9]{64}$")
    """Digest of the platform manifest."""
    rollout: str | None = Field(default=None, max_length=253)
    """Rollout that assigned it."""
    health: Literal["Unknown", "Starting", "Healthy", "Unhealthy"] | None = None
    """Probe result, for the running workload."""
    config_version: str | None = Field(default=None, max_length=128)
    """Hash of the merged configuration applied."""


class DeviceFacts(ApiModel):
    """Facts the agent reports about its device."""

    architecture: str | None = Field(default=None, max_length=32)
    os: str | None = Field(default=None, max_length=128)
    memory_bytes: int | None = Field(default=None, ge=0)
    disk_free_bytes: int | None = Field(default=None, ge=0)
    agent_version: str | None = Field(default=None, max_length=64)


class EdgeDeviceStatus(ObjectStatus):
    """Observed state of the device.

    Conditions: Enrolled, Online, Ready, UpdateFailed, Reconciling, Stalled.
    """

    enrollment: Enrollment | None = None
    """Identity recorded at enrolment."""
    desired: Workload | None = None
    """What the rollout controller wants the device to run."""
    current: Workload | None = None
    """What the device reports it runs."""
    facts: DeviceFacts | None = None
    """What the device reports about itself."""
    last_seen: str | None = Field(default=None, max_length=64)
    """Last contact with the gateway (RFC 3339, coarse)."""


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
    status: EdgeDeviceStatus | None = None

    def model_post_init(self, context: Any, /) -> None:
        if len(self.metadata.name) > 63:
            raise ValueError("an EdgeDevice name is at most 63 characters")
