"""The parts of a Rollout's spec: which model and version, the canary steps (a weight
or a pause each, weights strictly increasing) and the health gate.
:mod:`edgefleet.api.rollout` puts them together.
"""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import ConfigDict, Field

from edgefleet.api.inferencemodel import VERSION_PATTERN
from edgefleet.api.meta import DNS_LABEL, ApiModel, Duration, cel

__all__ = ["CanaryStep", "CanaryStrategy", "HealthGate", "ModelRef", "Pause"]


class ModelRef(ApiModel):
    """The InferenceModel (in the Rollout's namespace) and the version to roll out."""

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """InferenceModel name (a DNS label, as InferenceModel names are)."""
    version: str = Field(min_length=1, max_length=64, pattern=VERSION_PATTERN)
    """Version that must match the InferenceModel's spec.version (same syntax)."""


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
