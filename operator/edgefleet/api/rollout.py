"""Rollout: put model M at version V on the devices a selector matches, step by step.

The kind is ``Rollout`` in group ``edgefleet.io``; Argo Rollouts also has a kind
``Rollout`` (short name ``ro``), so ours uses the short names ``efro`` and
``efrollout``, and ``kubectl get rollouts.edgefleet.io`` is unambiguous.

The kind, its spec and its status; the spec's parts (model reference, canary steps,
health gate) are in :mod:`edgefleet.api.rollout_parts`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field

from edgefleet.api.inferencemodel_parts import Probe
from edgefleet.api.meta import (
    API_VERSION,
    ApiModel,
    ConfigValues,
    DnsLabel,
    Duration,
    LabelSelector,
    ObjectMeta,
    ObjectStatus,
    cel,
)
from edgefleet.api.rollout_parts import CanaryStrategy, HealthGate, ModelRef

__all__ = [
    "DeviceCounts",
    "DeviceNote",
    "Rollout",
    "RolloutPhase",
    "RolloutSpec",
    "RolloutStatus",
    "RolloutTarget",
    "TargetImage",
    "WaveStatus",
]

#: An absolute count ("3") or a percentage ("25%").
INT_OR_PERCENT = r"^([0-9]{1,6}|([0-9]|[1-9][0-9]|100)%)$"

_ZERO = r"^0+%?$"
_ZERO_MESSAGE = "maxUnavailable must be at least 1 or 1%: with 0 no device could ever update"


def _lets_devices_update(value: str) -> str:
    if re.fullmatch(_ZERO, value):
        raise ValueError(_ZERO_MESSAGE)
    return value


_DEADLINE_AFTER_GATE = (
    "duration(has(self.healthGate) && has(self.healthGate.minHealthyDuration)"
    " ? self.healthGate.minHealthyDuration : '30s')"
    " < duration(has(self.progressDeadline) ? self.progressDeadline : '15m')"
)
_UNIT = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}


def _exact_seconds(duration: str) -> Decimal:
    """Seconds in a (pattern-checked) duration, exactly, as CEL's duration() sees them."""
    return sum(
        (Decimal(n) * _UNIT[u] for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", duration)),
        Decimal(0),
    )


_DEADLINE_MESSAGE = (
    "progressDeadline must be longer than healthGate.minHealthyDuration,"
    " or no step could ever finish before its deadline"
)


class RolloutSpec(ApiModel):
    """What to roll out, where, and how carefully."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(_DEADLINE_AFTER_GATE, _DEADLINE_MESSAGE, field_path=".progressDeadline")
            ]
        }
    )

    model: ModelRef
    """The model and version to roll out."""
    selector: LabelSelector
    """Which EdgeDevices (in this namespace) take part; must not be empty."""
    canary: CanaryStrategy | None = None
    """Canary steps; without them all selected devices update, maxUnavailable at a time."""
    max_unavailable: Annotated[
        str,
        Field(
            pattern=INT_OR_PERCENT,
            json_schema_extra={
                "x-kubernetes-validations": [cel(f"!self.matches('{_ZERO}')", _ZERO_MESSAGE)]
            },
        ),
        AfterValidator(_lets_devices_update),
    ] = "25%"
    """Devices that may be updating at once: a count or a percentage."""
    failure_threshold: Annotated[str, Field(pattern=INT_OR_PERCENT)] = "10%"
    """Failed devices that abort and roll back: a count, or a percentage of those updated."""
    min_failed_devices: int = Field(default=1, ge=1, le=100000)
    """A percentage threshold never aborts with fewer failed devices than this."""
    progress_deadline: Duration = "15m"
    """A step that makes no progress for this long stalls the rollout."""
    health_gate: HealthGate = Field(default_factory=HealthGate)
    """When an updated device counts as healthy."""
    priority: int = Field(default=0, ge=0, le=1000)
    """When rollouts overlap on a device, the higher priority wins; a tie is an error."""
    paused: bool = False
    """Stop between steps until set back to false."""
    abort: bool = False
    """Abort and roll every updated device back to its previous version."""
    config: ConfigValues = Field(default_factory=dict)
    """Configuration overrides for this rollout (over the model's, under the device's)."""
    group: DnsLabel | None = None
    """Optional label for grouping rollouts in dashboards."""

    def model_post_init(self, context: Any, /) -> None:
        gate = _exact_seconds(self.health_gate.min_healthy_duration)
        if not gate < _exact_seconds(self.progress_deadline):
            raise ValueError(_DEADLINE_MESSAGE)


RolloutPhase = Literal["Pending", "Progressing", "Paused", "Completed", "Aborted", "Failed"]


class DeviceCounts(ApiModel):
    """How the selected devices stand."""

    selected: int = Field(default=0, ge=0)
    updated: int = Field(default=0, ge=0)
    healthy: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    pending: int = Field(default=0, ge=0)
    offline: int = Field(default=0, ge=0)
    lost: int = Field(default=0, ge=0)
    """Matching devices another rollout of the same model wins (not in selected)."""
    skipped: int = Field(default=0, ge=0)
    """Matching devices left out: suspended, or no image for their platform."""


class TargetImage(ApiModel):
    """The image built for one platform."""

    platform: str = Field(max_length=32)
    digest: str = Field(pattern=r"^sha256:[a-f0-9]{64}$")


class RolloutTarget(ApiModel):
    """The model build this rollout puts on devices, pinned when the rollout starts."""

    version: str = Field(max_length=64)
    repository: str = Field(max_length=255)
    """Repository path without the registry host."""
    index_digest: str = Field(pattern=r"^sha256:[a-f0-9]{64}$")
    images: list[TargetImage] = Field(default_factory=list, max_length=3)
    probe: Probe | None = None
    config: ConfigValues = Field(default_factory=dict)
    """The model's configuration with the rollout's overrides on top."""
    host_devices: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=list, max_length=16
    )
    generation: int = Field(default=0, ge=0)
    """The Rollout generation the target was pinned for."""


class WaveStatus(ApiModel):
    """One setWeight step: the devices it covers (cumulative) and how they stand."""

    step: int = Field(ge=0)
    weight: int = Field(ge=0, le=100)
    devices: int = Field(default=0, ge=0)
    updated: int = Field(default=0, ge=0)
    healthy: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    offline: int = Field(default=0, ge=0)


class DeviceNote(ApiModel):
    """A device named in status, and why (a failure, a lost overlap)."""

    name: str = Field(max_length=253)
    reason: str = Field(max_length=64)
    message: str = Field(default="", max_length=512)


class RolloutStatus(ObjectStatus):
    """Observed progress of the rollout.

    Conditions: Progressing, Aborted, DevicesSkipped, Ready, Reconciling, Stalled.
    """

    phase: RolloutPhase | None = None
    """Pending, Progressing, Paused, Completed, Aborted or Failed."""
    current_step: int | None = Field(default=None, ge=0)
    """Index of the canary step in progress."""
    counts: DeviceCounts | None = None
    """How the selected devices stand."""
    message: str | None = Field(default=None, max_length=4096)
    """Why the rollout is where it is."""
    target: RolloutTarget | None = None
    """The build being rolled out, pinned when the rollout starts."""
    stable_version: str | None = Field(default=None, max_length=64)
    """The version most selected devices ran before this rollout."""
    canary_version: str | None = Field(default=None, max_length=64)
    """The version being rolled out."""
    started_at: str | None = Field(default=None, max_length=64)
    """When the rollout (or its last retry) started (RFC 3339)."""
    step_started_at: str | None = Field(default=None, max_length=64)
    """When the current step started."""
    healthy_since: str | None = Field(default=None, max_length=64)
    """Since when every online device of the current wave has been healthy."""
    last_progress_at: str | None = Field(default=None, max_length=64)
    """Last time a device became healthy or a step completed (progress deadline)."""
    waves: list[WaveStatus] = Field(default_factory=list, max_length=21)
    """Per setWeight step: cumulative device counts."""
    failed_devices: list[DeviceNote] = Field(default_factory=list, max_length=50)
    """Devices that failed (the first 50)."""
    lost_devices: list[DeviceNote] = Field(default_factory=list, max_length=50)
    """Devices another rollout of the same model won, and why (the first 50)."""
    retry_token: str | None = Field(default=None, max_length=64)
    """The edgefleet.io/retry annotation value last acted on."""


class Rollout(ApiModel):
    """A rollout of one model version to a selected set of devices."""

    KIND: ClassVar[str] = "Rollout"
    PLURAL: ClassVar[str] = "rollouts"

    api_version: Literal["edgefleet.io/v1alpha1"] = API_VERSION
    kind: Literal["Rollout"] = "Rollout"
    metadata: ObjectMeta
    spec: RolloutSpec
    status: RolloutStatus | None = Field(
        default=None, json_schema_extra={"default": {"observedGeneration": 0}}
    )
    """Defaulted to observedGeneration 0 by the API server, so kstatus reads a Rollout no
    controller has looked at yet as InProgress (generation 1 is not observed), never Current."""
