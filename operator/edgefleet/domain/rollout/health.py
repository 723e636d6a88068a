"""How one selected device stands in a rollout: pending, updating, healthy, failed, offline.

The health gate is a list of checks over what the device reports for the workload
(:class:`~edgefleet.api.edgedevice.CurrentWorkload`); p95 latency is the one today,
and error rate or probe accuracy are further :data:`GateCheck` functions of the same
shape. A device is *healthy* when it reports the new digest as ``Healthy`` and every
check passes; *failed* when it reports the new digest ``Unhealthy``, a check fails on
the running new version, or the agent reported ``UpdateFailed`` after the rollout
started while not running the new digest (it rolled back by itself). Offline devices
(``Online`` not True) are counted apart and never fail.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from edgefleet.api.conditions import Reason, Type
from edgefleet.api.edgedevice import CurrentWorkload, DesiredWorkload, EdgeDevice
from edgefleet.api.rollout_parts import HealthGate
from edgefleet.domain.conditions import find

__all__ = ["CHECKS", "DeviceState", "GateCheck", "State", "assess", "parse_time"]

State = Literal["pending", "updating", "healthy", "failed"]

#: A gate check: (gate, reported workload) → a failure reason and message, or None.
GateCheck = Callable[[HealthGate, CurrentWorkload], tuple[str, str] | None]


def _latency(gate: HealthGate, current: CurrentWorkload) -> tuple[str, str] | None:
    limit, p95 = gate.max_p95_latency_ms, current.p95_latency_ms
    if limit is not None and p95 is not None and p95 > limit:
        return Reason.LATENCY_ABOVE_LIMIT, f"p95 latency {p95:g} ms > {limit} ms"
    return None


CHECKS: tuple[GateCheck, ...] = (_latency,)


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


@dataclass(frozen=True)
class DeviceState:
    """One selected device: its state, whether it is online, and why it failed."""

    name: str
    state: State
    online: bool
    reason: str = ""
    message: str = ""


def _entry(items: Sequence[CurrentWorkload | DesiredWorkload], model: str) -> object | None:
    return next((w for w in items if w.model == model), None)


def assess(
    device: EdgeDevice,
    expected: DesiredWorkload,
    gate: HealthGate,
    started_at: datetime.datetime | None,
) -> DeviceState:
    """Classify ``device`` against the workload the rollout wants it to run."""
    status = device.status
    name = device.metadata.name
    conditions = status.conditions if status is not None else []
    online_cond = find(conditions, Type.ONLINE)
    online = online_cond is not None and online_cond.status == "True"
    desired = next(
        (w for w in (status.desired if status else []) if w.model == expected.model), None
    )
    if desired != expected:
        return DeviceState(name, "pending", online)
    current = next(
        (w for w in (status.current if status else []) if w.model == expected.model), None
    )
    if current is not None and current.image_digest == expected.image_digest:
        if current.health == "Unhealthy":
            return DeviceState(name, "failed", online, Reason.DEVICE_FAILED, "workload unhealthy")
        for check in CHECKS:
            problem = check(gate, current)
            if problem is not None:
                return DeviceState(name, "failed", online, *problem)
        if current.health == "Healthy":
            return DeviceState(name, "healthy", online)
        return DeviceState(name, "updating", online)
    failed = find(conditions, Type.UPDATE_FAILED)
    when = parse_time(failed.last_transition_time) if failed is not None else None
    if (
        failed is not None
        and failed.status == "True"
        and started_at is not None
        and when is not None
        and when >= started_at
    ):
        return DeviceState(name, "failed", online, failed.reason, failed.message[:256])
    return DeviceState(name, "updating", online)
