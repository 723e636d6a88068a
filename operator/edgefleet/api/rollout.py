"""Rollout: put model M at version V on the devices a selector matches, step by step.

The kind is ``Rollout`` in group ``edgefleet.io``; Argo Rollouts also has a kind
``Rollout`` (short name ``ro``), so ours uses the short names ``efro`` and
``efrollout``, and ``kubectl get rollouts.edgefleet.io`` is unambiguous.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

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

__all__ = [
    "CanaryStep",
    "CanaryStrategy",
    "DeviceCounts",
    "HealthGate",
    "ModelRef",
    "Pause",
    "Rollout",
    "RolloutPhase",
    "RolloutSpec",
    "RolloutStatus",
]

#: An absolute count ("3") or a percentage ("25%").
INT_OR_PERCENT = r"^([0-9]{1,6}|([0-9]|[1-9][0-9]|100)%)$"


class ModelRef(ApiModel):
    """The InferenceModel (in the Rollout's namespace) and the version to roll out."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    """InferenceModel name."""
    version: str = Field(min_length=1, max_length=64)
    """Version that must match the InferenceModel's spec.version."""


class Pause(ApiModel):
    """Wait before the next step: for a duration, or until promoted when none is given."""

    duration: Duration | None = None
    """How long to wait, e.g. 10m; wait for `kubectl edgefleet rollout promote` when unset."""


class CanaryStep(ApiModel):
    """One canary step: either shift to a weight, or pause."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.setWeight) != has(self.pause)",
                    "a step is exactly one of setWeight or pause",
                )
            ]
        }
    )

    set_weight: int | None = Field(default=None, ge=1, le=100)
    """Percentage of the selected devices that run the new version after this step (1-100)."""
    pause: Pause | None = None
    """Wait here."""

    def model_post_init(self, context: Any, /) -> None:
        if (self.set_weight is None) == (self.pause is None):
            raise ValueError("a step is exactly one of setWeight or pause")


_WEIGHTS = "self.filter(s, has(s.setWeight)).map(s, s.setWeight)"


class CanaryStrategy(ApiModel):
    """Canary steps; after the last step every selected device gets the new version."""

    steps: list[CanaryStep] = Field(
        min_length=1,
        max_length=20,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"{_WEIGHTS}.isSorted()"
                    f" && {_WEIGHTS}.all(w, {_WEIGHTS}.filter(x, x == w).size() == 1)",
                    "setWeight values must be strictly increasing",
                )
            ]
        },
    )
    """The steps, in order."""

    def model_post_init(self, context: Any, /) -> None:
        weights = [s.set_weight for s in self.steps if s.set_weight is not None]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError("setWeight values must be strictly increasing")


class HealthGate(ApiModel):
    """When an updated device counts as healthy."""

    min_healthy_duration: Duration = "30s"
    """A device must stay healthy this long after its update."""
    max_p95_latency_ms: int | None = Field(default=None, ge=1, le=600000)
    """Optional limit on the p95 inference latency the device reports."""


class RolloutSpec(ApiModel):
    """What to roll out, where, and how carefully."""

    model: ModelRef
    """The model and version to roll out."""
    selector: LabelSelector
    """Which EdgeDevices (in this namespace) take part; must not be empty."""
    canary: CanaryStrategy | None = None
    """Canary steps; without them all selected devices update, maxUnavailable at a time."""
    max_unavailable: Annotated[str, Field(pattern=INT_OR_PERCENT)] = "25%"
    """Devices that may be updating at once: a count or a percentage."""
    failure_threshold: Annotated[str, Field(pattern=INT_OR_PERCENT)] = "10%"
    """Failed devices that abort the rollout and roll back: a count or a percentage."""
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


RolloutPhase = Literal["Pending", "Progressing", "Paused", "Completed", "Aborted", "Failed"]


class DeviceCounts(ApiModel):
    """How the selected devices stand."""

    selected: int = Field(default=0, ge=0)
    updated: int = Field(default=0, ge=0)
    healthy: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    pending: int = Field(default=0, ge=0)
    offline: int = Field(default=0, ge=0)


class RolloutStatus(ObjectStatus):
    """Observed progress of the rollout.

    Conditions: Progressing, Healthy, Ready, Reconciling, Stalled.
    """

    phase: RolloutPhase | None = None
    """Pending, Progressing, Paused, Completed, Aborted or Failed."""
    current_step: int | None = Field(default=None, ge=0)
    """Index of the canary step in progress."""
    counts: DeviceCounts | None = None
    """How the selected devices stand."""
    message: str | None = Field(default=None, max_length=4096)
    """Why the rollout is where it is."""


class Rollout(ApiModel):
    """A rollout of one model version to a selected set of devices."""

    KIND: ClassVar[str] = "Rollout"
    PLURAL: ClassVar[str] = "rollouts"

    api_version: Literal["edgefleet.io/v1alpha1"] = API_VERSION
    kind: Literal["Rollout"] = "Rollout"
    metadata: ObjectMeta
    spec: RolloutSpec
    status: RolloutStatus | None = None
