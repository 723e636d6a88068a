"""What the rollout controller writes to an EdgeDevice: assignment and rollback.

Both are a complete new value of the fields the controller owns (``desired``,
``previous``, ``desiredRevision``, ``desiredVersion``), applied in one server-side
apply under the field manager ``edgefleet-rollouts``: applying the whole list keeps
the entries of the device's other models, and writing the replaced entry into
``previous`` in the same apply means an abort can always restore it. One assignment
and at most one rollback: at most two writes per device per rollout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from edgefleet.api.edgedevice import (
    DesiredWorkload,
    EdgeDevice,
    EdgeDeviceStatus,
    PreviousWorkload,
)

__all__ = ["FIELD_MANAGER", "DeviceWrite", "assignment", "rollback", "rollback_entry", "summary"]

FIELD_MANAGER = "edgefleet-rollouts"


def summary(items: list[DesiredWorkload]) -> str | None:
    """``model=version,…`` for the printer column (at most 256 characters)."""
    if not items:
        return None
    text = ",".join(sorted(f"{w.model}={w.version}" for w in items))
    return text if len(text) <= 256 else text[:253] + "..."


@dataclass(frozen=True)
class DeviceWrite:
    """A new value of the controller-owned EdgeDevice status fields."""

    namespace: str
    name: str
    kind: Literal["assign", "rollback"]
    desired: tuple[DesiredWorkload, ...]
    previous: tuple[PreviousWorkload, ...]
    revision: int

    def apply_body(self) -> dict[str, Any]:
        """The server-side apply body (status subresource)."""
        desired = list(self.desired)
        status: dict[str, Any] = {
            "desired": [w.wire() for w in desired],
            "previous": [p.wire() for p in self.previous],
            "desiredRevision": self.revision,
        }
        text = summary(desired)
        if text is not None:
            status["desiredVersion"] = text
        return {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "status": status,
        }


def _status(device: EdgeDevice) -> EdgeDeviceStatus:
    return device.status or EdgeDeviceStatus()


def assignment(device: EdgeDevice, workload: DesiredWorkload) -> DeviceWrite:
    """Put ``workload`` on ``device``, remembering what it replaces."""
    st = _status(device)
    model, rollout = workload.model, workload.rollout or ""
    replaced = next((w for w in st.desired if w.model == model), None)
    mine = next((p for p in st.previous if p.model == model and p.rollout == rollout), None)
    if mine is None or (replaced is not None and replaced.rollout == rollout):
        # A new attempt of this rollout (a new version or config) over its last one
        # remembers that one: an abort goes back one version, not to before the first.
        memory = PreviousWorkload(model=model, rollout=rollout, workload=replaced)
    else:
        memory = mine
    desired = sorted([*(w for w in st.desired if w.model != model), workload], key=_model)
    previous = sorted([*(p for p in st.previous if p.model != model), memory], key=_model)
    return DeviceWrite(
        device.metadata.namespace or "default",
        device.metadata.name,
        "assign",
        tuple(desired),
        tuple(previous),
        (st.desired_revision or 0) + 1,
    )


def rollback_entry(
    device: EdgeDevice, model: str, rollout: str, expected: DesiredWorkload | None
) -> PreviousWorkload | None:
    """The memory a rollback of ``rollout`` would restore, if the device holds what this
    attempt assigns (``expected``); what an earlier attempt left there stays."""
    st = _status(device)
    mine = next((p for p in st.previous if p.model == model and p.rollout == rollout), None)
    current = next((w for w in st.desired if w.model == model), None)
    if mine is None or current is None or current.rollout != rollout or current != expected:
        return None
    return mine


def rollback(device: EdgeDevice, memory: PreviousWorkload) -> DeviceWrite:
    """Restore the desired entry ``memory`` recorded (or remove the model)."""
    st = _status(device)
    model = memory.model
    desired = [w for w in st.desired if w.model != model]
    if memory.workload is not None:
        desired.append(memory.workload)
    previous = [p for p in st.previous if p.model != model]
    return DeviceWrite(
        device.metadata.namespace or "default",
        device.metadata.name,
        "rollback",
        tuple(sorted(desired, key=_model)),
        tuple(sorted(previous, key=_model)),
        (st.desired_revision or 0) + 1,
    )


def _model(item: DesiredWorkload | PreviousWorkload) -> str:
    return item.model
