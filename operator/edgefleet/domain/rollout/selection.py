"""Which devices a rollout covers, in which order, and who wins an overlap.

Pure functions over the API models. Selection: the label selector (``matchLabels`` and
``matchExpressions`` as Kubernetes evaluates them), the rollout's namespace, not
suspended, a platform the pinned build has an image for. Order: by a hash of
(rollout uid, device name), so a device's place never changes when others join or
leave, and different rollouts start with different devices. Overlap: two rollouts of
the same model that both select a device resolve by ``spec.priority``; an aborted
rollout does not compete; between equal priorities an active rollout beats a finished
one and the newer of two finished ones wins; two active ones with equal priority are
a tie, which neither takes (a condition, never a crash).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgefleet.api.conditions import Reason, Type
from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.api.meta import LabelSelector
from edgefleet.api.rollout import Rollout
from edgefleet.domain.conditions import is_true

__all__ = ["Claim", "claim", "matches", "order_key"]


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy ``selector`` (all terms; an empty selector matches none)."""
    terms = 0
    for key, value in (selector.match_labels or {}).items():
        terms += 1
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions or []:
        terms += 1
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return terms > 0


def order_key(rollout_uid: str, device: str) -> str:
    """The device's stable place in the rollout's order."""
    return hashlib.sha256(f"{rollout_uid}/{device}".encode()).hexdigest()


def _finished(rollout: Rollout) -> bool:
    status = rollout.status
    return status is not None and status.phase == "Completed"


def _aborted(rollout: Rollout) -> bool:
    status = rollout.status
    return rollout.spec.abort or (status is not None and is_true(status.conditions, Type.ABORTED))


def _created(rollout: Rollout) -> str:
    extra = rollout.metadata.model_extra or {}
    return str(extra.get("creationTimestamp", "") or "")


@dataclass(frozen=True)
class Claim:
    """Who takes a device among rollouts of one model: ``winner`` or a tie."""

    winner: str | None
    reason: str = ""
    message: str = ""


def claim(me: Rollout, rivals: Sequence[Rollout], device: EdgeDevice) -> Claim:
    """Whether ``me`` takes ``device`` given the other rollouts of the same model."""
    name = me.metadata.name
    others = [
        r
        for r in rivals
        if r.metadata.name != name
        and r.spec.model.name == me.spec.model.name
        and not _aborted(r)
        and matches(r.spec.selector, device.metadata.labels)
        and _can_serve(r, device)
    ]
    if not others:
        return Claim(name)
    for other in others:
        if other.spec.priority > me.spec.priority:
            return Claim(
                other.metadata.name,
                Reason.LOST_TO_PRIORITY,
                f"rollout {other.metadata.name} has priority {other.spec.priority}"
                f" > {me.spec.priority}",
            )
    for other in others:
        if other.spec.priority < me.spec.priority:
            continue
        mine, theirs = _finished(me), _finished(other)
        if mine and not theirs:
            return Claim(
                other.metadata.name,
                Reason.LOST_TO_PRIORITY,
                f"rollout {other.metadata.name} (same priority) is in progress",
            )
        if theirs and not mine:
            continue
        if mine and theirs:
            if (_created(other), other.metadata.name) > (_created(me), name):
                return Claim(
                    other.metadata.name,
                    Reason.LOST_TO_PRIORITY,
                    f"rollout {other.metadata.name} (same priority) is newer",
                )
            continue
        return Claim(
            None,
            Reason.PRIORITY_TIE,
            f"rollout {other.metadata.name} also selects it with the same priority"
            f" {me.spec.priority}; set different spec.priority values",
        )
    return Claim(name)


def _can_serve(rollout: Rollout, device: EdgeDevice) -> bool:
    if device.spec.suspended:
        return False
    target = rollout.status.target if rollout.status is not None else None
    return target is None or any(i.platform == device.spec.platform for i in target.images)
