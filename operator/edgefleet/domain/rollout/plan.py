"""The rollout's plan: canary steps as waves, budgets, thresholds, the pinned target.

Steps: a ``setWeight`` step is a wave — the first ``ceil(weight% * selected)``
devices in the rollout's stable order (cumulative); a ``pause`` step waits (for a
duration, or for a promotion). When the last weight is below 100, or there are no
canary steps, an implicit final ``setWeight: 100`` step follows, so a rollout always
ends with every selected device updated.

The target is pinned from the InferenceModel when the rollout starts (version,
repository without the registry host, index and per-platform digests, probe, the
model's configuration); what a device should run is a pure function of that target,
the rollout's configuration overrides and the device's platform (the device's own
configuration is layered on top by the gateway).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgefleet.api.conditions import Reason, Type
from edgefleet.api.edgedevice import DesiredWorkload
from edgefleet.api.inferencemodel import InferenceModel
from edgefleet.api.meta import parse_duration
from edgefleet.api.rollout import Rollout, RolloutTarget, TargetImage
from edgefleet.domain.conditions import is_true

__all__ = [
    "Step",
    "TargetProblemError",
    "budget",
    "expected_workload",
    "failure_limit",
    "parse_count",
    "pin_target",
    "steps_of",
    "wave_size",
]


@dataclass(frozen=True)
class Step:
    """One step: ``weight`` for a wave, else a pause (``pause_seconds`` None = promote)."""

    index: int
    weight: int | None = None
    pause_seconds: float | None = None

    @property
    def is_wave(self) -> bool:
        return self.weight is not None


def steps_of(rollout: Rollout) -> list[Step]:
    """The steps to run, with the implicit final ``setWeight: 100``."""
    out: list[Step] = []
    for i, step in enumerate(rollout.spec.canary.steps if rollout.spec.canary else []):
        if step.set_weight is not None:
            out.append(Step(i, weight=step.set_weight))
        elif step.pause is not None:
            seconds = parse_duration(step.pause.duration) if step.pause.duration else None
            out.append(Step(i, pause_seconds=seconds))
    weights = [s.weight for s in out if s.weight is not None]
    if not weights or weights[-1] < 100:
        out.append(Step(len(out), weight=100))
    return out


def parse_count(value: str, total: int, *, round_up: bool) -> int:
    """An int-or-percent (``"3"``, ``"25%"``) as a count of ``total``."""
    if value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def wave_size(weight: int, selected: int) -> int:
    """Devices a wave of ``weight`` percent covers (at least one when any is selected)."""
    if selected == 0:
        return 0
    return min(selected, max(1, math.ceil(weight * selected / 100)))


def budget(rollout: Rollout, selected: int) -> int:
    """Devices that may be updating at once (at least one, so a rollout can move)."""
    return max(1, parse_count(rollout.spec.max_unavailable, selected, round_up=False))


def failure_limit(rollout: Rollout, updated: int) -> int:
    """Failed devices that abort: an absolute count, or a percentage of those updated
    (rounded up) but never fewer than ``minFailedDevices``."""
    value = rollout.spec.failure_threshold
    if not value.endswith("%"):
        return max(1, int(value))
    return max(rollout.spec.min_failed_devices, parse_count(value, updated, round_up=True))


class TargetProblemError(Exception):
    """The model or version cannot be rolled out (yet): a condition reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _repository_path(repository: str) -> str:
    """``registry.example:5000/edgefleet/models/ns/m`` → ``edgefleet/models/ns/m``."""
    head, _, rest = repository.partition("/")
    if rest and ("." in head or ":" in head or head == "localhost"):
        return rest
    return repository


def pin_target(rollout: Rollout, model: InferenceModel | None) -> RolloutTarget:
    """The build to roll out, from a Ready model at the rollout's version."""
    ref = rollout.spec.model
    if model is None:
        raise TargetProblemError(
            Reason.MODEL_NOT_FOUND, f"InferenceModel {ref.name} does not exist"
        )
    if model.spec.version != ref.version:
        raise TargetProblemError(
            Reason.VERSION_NOT_FOUND,
            f"InferenceModel {ref.name} is at version {model.spec.version}, not {ref.version}",
        )
    status = model.status
    built = (
        status is not None
        and status.observed_generation == model.metadata.generation
        and is_true(status.conditions, Type.READY)
        and status.index_digest is not None
        and status.repository is not None
    )
    if not built or status is None or status.index_digest is None or status.repository is None:
        raise TargetProblemError(
            Reason.MODEL_NOT_READY, f"InferenceModel {ref.name} {ref.version} is not built yet"
        )
    return RolloutTarget(
        version=ref.version,
        repository=_repository_path(status.repository),
        index_digest=status.index_digest,
        images=[TargetImage(platform=i.platform, digest=i.digest) for i in status.images],
        probe=model.spec.probe,
        config=dict(model.spec.config),
        host_devices=list(model.spec.host_devices),
        generation=rollout.metadata.generation or 0,
    )


def expected_workload(
    rollout: Rollout, target: RolloutTarget, platform: str
) -> DesiredWorkload | None:
    """What a device of ``platform`` should run under this rollout (None: not built)."""
    digest = next((i.digest for i in target.images if i.platform == platform), None)
    if digest is None:
        return None
    return DesiredWorkload(
        model=rollout.spec.model.name,
        version=target.version,
        rollout=rollout.metadata.name,
        repository=target.repository,
        index_digest=target.index_digest,
        image_digest=digest,
        probe=target.probe,
        config={**target.config, **rollout.spec.config},
        host_devices=list(target.host_devices),
    )
