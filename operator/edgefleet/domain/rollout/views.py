"""What one pass knows about each device, and a memo so a pass re-assesses only the
devices that changed.

A :class:`DeviceView` is everything :func:`~edgefleet.domain.rollout.decide` derives
from one device on its own: whether the rollout selects it (or skips it, or lost it to
another rollout), its place in the rollout's order, what it should run, its
:class:`~edgefleet.domain.rollout.health.DeviceState`, the version it counts towards
the stable version and the memory a rollback would restore. :func:`view` is a pure
function of the device and a :class:`Context` (the rollout, its rivals, the pinned
target, the health gate, the start time).

:class:`Memo` keeps the views of one rollout between passes, keyed by the device's
name and ``resourceVersion``: a device whose ``resourceVersion`` is unchanged, in an
unchanged context, has the same view (an object at one ``resourceVersion`` never
changes), so only changed devices are re-assessed. A change of context drops every
view; a device without a ``resourceVersion`` is always re-assessed. The memo never
changes a decision, only its cost (the unit tests compare both over random fleets).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from edgefleet.api.conditions import Reason, Type
from edgefleet.api.edgedevice import DesiredWorkload, EdgeDevice, PreviousWorkload
from edgefleet.api.rollout import DeviceNote, Rollout, RolloutTarget
from edgefleet.domain.conditions import is_true
from edgefleet.domain.rollout import plan, selection, writes
from edgefleet.domain.rollout.health import DeviceState, assess

__all__ = ["Context", "DeviceView", "Memo", "context", "view", "views"]

Kind = Literal["chosen", "skipped", "lost", "other"]


@dataclass(frozen=True)
class Context:
    """What a device's view depends on besides the device, and its fingerprint."""

    rollout: Rollout
    rivals: Sequence[Rollout]
    target: RolloutTarget | None
    expected: dict[str, DesiredWorkload | None]  # by platform
    started: datetime.datetime | None
    fingerprint: str


@dataclass(frozen=True)
class DeviceView:
    """One device as a pass sees it (see the module docstring)."""

    device: EdgeDevice
    kind: Kind
    order: str = ""
    note: DeviceNote | None = None
    tie: bool = False
    expected: DesiredWorkload | None = None
    state: DeviceState | None = None
    stable: str | None = None  # the version this device counts towards the stable one
    rollback: PreviousWorkload | None = None


def _claimant(r: Rollout, *, with_status: bool = True) -> list[object]:
    """The fields of a rollout that :func:`selection.claim` reads."""
    st = r.status if with_status else None
    extra = r.metadata.model_extra or {}
    return [
        r.metadata.name,
        r.spec.model.name,
        r.spec.priority,
        r.spec.abort,
        r.spec.selector.model_dump(mode="json"),
        str(extra.get("creationTimestamp", "") or ""),
        st.phase if st is not None else None,
        st is not None and is_true(st.conditions, Type.ABORTED),
        sorted(i.platform for i in st.target.images) if st is not None and st.target else None,
    ]


def context(
    ro: Rollout,
    rivals: Sequence[Rollout],
    target: RolloutTarget | None,
    started: datetime.datetime | None,
) -> Context:
    """The context of one pass over ``ro`` (with ``target`` pinned, or None)."""
    expected = (
        {i.platform: plan.expected_workload(ro, target, i.platform) for i in target.images}
        if target is not None
        else {}
    )
    fingerprint = json.dumps(
        [
            ro.metadata.uid,
            _claimant(ro, with_status=bool(rivals)),  # its own phase matters only in a claim
            ro.spec.health_gate.model_dump(mode="json"),
            target.model_dump(mode="json") if target is not None else None,
            {k: v.model_dump(mode="json") if v else None for k, v in expected.items()},
            started.isoformat() if started is not None else None,
            [_claimant(r) for r in rivals],
        ],
        sort_keys=True,
        default=str,
    )
    return Context(ro, rivals, target, expected, started, fingerprint)


def _stable(device: EdgeDevice, model: str, me: str) -> str | None:
    """The version the device ran before ``me`` (its memory, or another rollout's entry)."""
    st = device.status
    if st is None:
        return None
    memory = next((p for p in st.previous if p.model == model and p.rollout == me), None)
    if memory is not None:
        return memory.workload.version if memory.workload is not None else None
    entry = next((d for d in st.desired if d.model == model), None)
    return entry.version if entry is not None and entry.rollout != me else None


def view(ctx: Context, device: EdgeDevice) -> DeviceView:
    """The view of ``device`` in ``ctx`` (pure)."""
    ro = ctx.rollout
    model, me = ro.spec.model.name, ro.metadata.name
    memory = writes.rollback_entry(device, model, me, ctx.expected.get(device.spec.platform))
    name = device.metadata.name
    if ctx.target is None or not selection.matches(ro.spec.selector, device.metadata.labels):
        return DeviceView(device, "other", rollback=memory)
    if device.spec.suspended:
        note = DeviceNote(name=name, reason=Reason.SUSPENDED_DEVICE)
        return DeviceView(device, "skipped", note=note, rollback=memory)
    expected = ctx.expected.get(device.spec.platform)
    if expected is None:
        note = DeviceNote(
            name=name,
            reason=Reason.PLATFORM_NOT_BUILT,
            message=f"{ctx.target.version} has no image for {device.spec.platform}",
        )
        return DeviceView(device, "skipped", note=note, rollback=memory)
    won = selection.claim(ro, ctx.rivals, device)
    if won.winner != me:
        note = DeviceNote(name=name, reason=won.reason, message=won.message[:512])
        return DeviceView(device, "lost", note=note, tie=won.winner is None, rollback=memory)
    return DeviceView(
        device,
        "chosen",
        order=selection.order_key(ro.metadata.uid or me, name),
        expected=expected,
        state=assess(device, expected, ro.spec.health_gate, ctx.started),
        stable=_stable(device, model, me),
        rollback=memory,
    )


class Memo:
    """The views of one rollout's devices from earlier passes (see the module docstring)."""

    def __init__(self) -> None:
        self.fingerprint: str | None = None
        self._held: dict[str, tuple[str, DeviceView]] = {}
        self.assessed = 0  # views computed by the last call (for tests and logs)

    def views(self, ctx: Context, devices: Sequence[EdgeDevice]) -> list[DeviceView]:
        """Every device's view: held ones where the device is unchanged, new ones else."""
        if ctx.fingerprint != self.fingerprint:
            self.fingerprint, self._held = ctx.fingerprint, {}
        held, fresh = self._held, {}
        out: list[DeviceView] = []
        self.assessed = 0
        for device in devices:
            name, rv = device.metadata.name, device.metadata.resource_version
            kept = held.get(name)
            if rv is not None and kept is not None and kept[0] == rv:
                made = kept[1]
            else:
                self.assessed += 1
                made = view(ctx, device)
            if rv is not None:
                fresh[name] = (rv, made)
            out.append(made)
        self._held = fresh
        return out


def views(ctx: Context, devices: Sequence[EdgeDevice], memo: Memo | None) -> list[DeviceView]:
    """Every device's view, from ``memo`` where it still holds."""
    if memo is None:
        return [view(ctx, d) for d in devices]
    return memo.views(ctx, devices)
