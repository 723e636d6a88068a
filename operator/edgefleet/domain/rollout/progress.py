"""Walking the steps: assign the current wave within the budget, gate it, move on.

:func:`advance` runs as many steps as the world allows in one pass: a wave whose
online devices all report healthy (and at least one does) for ``minHealthyDuration``
completes; a timed pause completes when its time is up; an untimed pause when the
``edgefleet.io/promote`` annotation names it (or a later step). ``spec.paused`` stops
both assignments and steps. Offline devices of a wave are assigned (they pick the
version up when they return) but never block or count against ``maxUnavailable``.
After the last step, devices that start matching later (late joiners) are assigned.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from edgefleet.api.conditions import Reason
from edgefleet.api.edgedevice import DesiredWorkload, EdgeDevice
from edgefleet.api.meta import parse_duration
from edgefleet.api.rollout import Rollout
from edgefleet.domain.rollout import plan, writes
from edgefleet.domain.rollout.events import Event
from edgefleet.domain.rollout.health import DeviceState, parse_time
from edgefleet.domain.rollout.report import Outcome, rfc3339
from edgefleet.domain.rollout.state import Decision, Progress

__all__ = ["advance"]


def _seconds(since: str | None, now: datetime.datetime) -> float:
    when = parse_time(since)
    return 0.0 if when is None else (now - when).total_seconds()


def advance(
    p: Progress,
    ro: Rollout,
    devices: Sequence[EdgeDevice],
    expected: Sequence[DesiredWorkload],
    states: Sequence[DeviceState],
    now: datetime.datetime,
    decision: Decision,
    events: list[Event],
    *,
    promoted: int | None,
    max_writes: int = 1000,
    in_flight: frozenset[str] = frozenset(),
) -> Outcome:
    """Assign and step forward as far as the world allows; the outcome says why it stops.

    Devices ``in_flight`` (written by an earlier pass, not yet answered) count as
    assigned in this pass: never written again, and a pending online one takes a slot.
    """
    at = rfc3339(now)
    steps = plan.steps_of(ro)
    n = len(devices)
    budget = plan.budget(ro, n) - sum(s.state == "updating" and s.online for s in states)
    assigned: set[str] = set()
    if in_flight:
        for s in states:
            if s.name in in_flight and s.state == "pending":
                assigned.add(s.name)
                budget -= s.online
    paused = ro.spec.paused
    gate = parse_duration(ro.spec.health_gate.min_healthy_duration)

    def assign(upto: int) -> None:
        nonlocal budget
        for device, want, state in zip(devices[:upto], expected[:upto], states[:upto], strict=True):
            if len(decision.writes) >= max_writes:
                return
            if state.state != "pending" or state.name in assigned:
                continue
            if state.online:
                if budget <= 0:
                    continue
                budget -= 1
            decision.writes.append(writes.assignment(device, want))
            assigned.add(state.name)

    def next_step(reason: str, message: str) -> None:
        p.step += 1
        p.step_started_at = p.last_progress_at = at
        p.healthy_since = None
        events.append(Event("Normal", reason, message))
        if p.step < len(steps) and steps[p.step].weight is not None:
            size = plan.wave_size(steps[p.step].weight or 0, n)
            events.append(
                Event(
                    "Normal",
                    Reason.WAVE_STARTED,
                    f"step {p.step}: wave of {size} device(s) (setWeight {steps[p.step].weight})",
                )
            )

    p.step = min(p.step, len(steps))
    while p.step < len(steps):
        step = steps[p.step]
        if step.weight is not None:
            size = plan.wave_size(step.weight, n)
            if not paused:
                assign(size)
            wave = states[:size]
            waiting = [s for s in wave if s.state == "pending" and s.name not in assigned]
            unhealthy = [
                s for s in wave if s.online and (s.state != "healthy" or s.name in assigned)
            ]
            healthy = sum(s.state == "healthy" for s in wave)
            if paused:
                return Outcome("Paused", Reason.PAUSED, f"step {p.step}: paused by spec.paused")
            if waiting or unhealthy:
                p.healthy_since = None
                return Outcome(
                    "Progressing",
                    Reason.WAITING_FOR_HEALTH,
                    f"step {p.step} (setWeight {step.weight}): {healthy}/{size} healthy,"
                    f" {len(waiting)} waiting for a slot (maxUnavailable"
                    f" {ro.spec.max_unavailable})",
                    waiting=True,
                )
            if healthy == 0:
                p.healthy_since = None
                return Outcome(
                    "Progressing",
                    Reason.WAITING_FOR_DEVICES,
                    f"step {p.step}: every device of the wave is offline",
                    waiting=True,
                )
            if p.healthy_since is None:
                # status keeps whole seconds: round the start *up*, so the gate holds
                # at least minHealthyDuration (rounded down it could pass up to 1 s early)
                p.healthy_since = rfc3339(now + datetime.timedelta(microseconds=999_999))
                p.last_progress_at = at
            held = _seconds(p.healthy_since, now)
            if held < gate:
                return Outcome(
                    "Progressing",
                    Reason.WAITING_FOR_HEALTH,
                    f"step {p.step} (setWeight {step.weight}): {healthy}/{size} healthy"
                    f" since {p.healthy_since}, holding for {gate:g}s (minHealthyDuration)",
                    waiting=False,
                )
            next_step(Reason.STEP_COMPLETED, f"step {p.step}: {healthy}/{size} devices healthy")
            continue
        if paused:
            return Outcome("Paused", Reason.PAUSED, f"step {p.step}: paused by spec.paused")
        if step.pause_seconds is None:
            if promoted is not None and promoted >= step.index:
                next_step(Reason.PROMOTED, f"step {step.index}: promoted")
                continue
            return Outcome(
                "Paused",
                Reason.WAITING_FOR_PROMOTION,
                f"step {p.step}: waiting for `kubectl edgefleet rollout promote"
                f" {ro.metadata.name}`",
            )
        left = step.pause_seconds - _seconds(p.step_started_at, now)
        if left > 0:
            return Outcome(
                "Progressing",
                Reason.WAITING_FOR_PAUSE,
                f"step {p.step}: pausing {step.pause_seconds:g}s from {p.step_started_at}",
            )
        next_step(Reason.STEP_COMPLETED, f"step {step.index}: pause over")
    if not paused:
        assign(n)  # late joiners
    pending = sum(s.state == "pending" and s.name not in assigned for s in states)
    extra = f"; {pending} late joiner(s) waiting for a slot" if pending else ""
    healthy = sum(s.state == "healthy" for s in states)
    return Outcome("Completed", Reason.COMPLETED, f"{healthy}/{n} devices healthy{extra}")
