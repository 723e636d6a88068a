"""The Rollout status of a pass: phase, counts, waves, conditions — in one place.

kstatus semantics (what Flux and Argo CD read): ``Reconciling=True`` from the first
pass until the rollout completes (also while paused), ``Stalled=True`` once it is
aborted or its progress deadline passed, ``Ready=True`` only when it completed; a
Rollout no controller has looked at has ``observedGeneration: 0`` (a CRD default), so
it is never read as Current before its first pass.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from edgefleet.api.conditions import Reason, Type
from edgefleet.api.meta import Condition, ConditionStatus
from edgefleet.api.rollout import DeviceCounts, DeviceNote, RolloutPhase, RolloutStatus, WaveStatus
from edgefleet.domain.conditions import find, mark_failure, set_condition, summarise_ready
from edgefleet.domain.failures import Failure
from edgefleet.domain.rollout.events import Event
from edgefleet.domain.rollout.health import DeviceState, parse_time
from edgefleet.domain.rollout.state import Progress

__all__ = ["Outcome", "conclude", "failed", "rfc3339"]


def rfc3339(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Outcome:
    """Where the pass left the rollout: phase, a reason and message, and whether it
    waits on devices (only such waits count against the progress deadline)."""

    phase: RolloutPhase
    reason: str
    message: str
    waiting: bool = False


def _counts(states: Sequence[DeviceState], written: set[str]) -> tuple[int, int, int, int]:
    updated = sum(s.state != "pending" or s.name in written for s in states)
    healthy = sum(s.state == "healthy" for s in states)
    failed = sum(s.state == "failed" for s in states)
    offline = sum(not s.online for s in states)
    return updated, healthy, failed, offline


def _skip_reason(skipped: Sequence[DeviceNote], lost: Sequence[DeviceNote], ties: int) -> str:
    if ties:
        return Reason.PRIORITY_TIE
    reasons = [n.reason for n in (*skipped, *lost)]
    for reason in (Reason.PLATFORM_NOT_BUILT, Reason.LOST_TO_PRIORITY, Reason.SUSPENDED_DEVICE):
        if reason in reasons:
            return reason
    return Reason.RECONCILED


def conclude(
    old: RolloutStatus,
    p: Progress,
    outcome: Outcome,
    *,
    generation: int,
    now: datetime.datetime,
    deadline: float,
    states: Sequence[DeviceState],
    written: set[str],
    wave_sizes: Sequence[tuple[int, int, int]],
    skipped: Sequence[DeviceNote],
    lost: Sequence[DeviceNote],
    ties: int,
    stable: str | None,
    events: list[Event],
) -> RolloutStatus:
    """The complete new status (the controller writes it when it differs)."""
    at = rfc3339(now)
    updated, healthy, failed, offline = _counts(states, written)
    if written or healthy > (old.counts.healthy if old.counts else 0):
        p.last_progress_at = at
    since = parse_time(p.last_progress_at) or now
    stalled = outcome.waiting and (now - since).total_seconds() > deadline
    phase: RolloutPhase = "Failed" if stalled else outcome.phase
    reason, message = outcome.reason, outcome.message
    if stalled:
        reason = Reason.PROGRESS_DEADLINE_EXCEEDED
        message = f"no progress for {deadline:.0f}s (progressDeadline): {outcome.message}"

    conds: list[Condition] = list(old.conditions)

    def put(type_: str, status: ConditionStatus, why: str, text: str = "") -> None:
        nonlocal conds
        conds = set_condition(conds, type_, status, why, text, generation=generation, now=at)

    aborted = phase == "Aborted"
    done = phase == "Completed"
    moving = phase in ("Pending", "Progressing")
    put(Type.PROGRESSING, "True" if moving or done else "False", reason, message)
    if aborted:
        put(Type.ABORTED, "True", reason, message)
    else:
        put(Type.ABORTED, "False", Reason.PROGRESSING)
    if aborted or stalled:
        put(Type.STALLED, "True", reason, message)
    else:
        put(Type.STALLED, "False", Reason.PROGRESSING)
    put(Type.RECONCILING, "True" if moving or phase == "Paused" else "False", reason, message)
    notes = [*skipped, *lost]
    skip_reason = _skip_reason(skipped, lost, ties)
    put(
        Type.DEVICES_SKIPPED,
        "True" if notes else "False",
        skip_reason,
        "; ".join(f"{n.name}: {n.reason} {n.message}".strip() for n in notes[:10])
        + (f" (and {len(notes) - 10} more)" if len(notes) > 10 else ""),
    )
    conds = summarise_ready(conds, (Type.PROGRESSING,), generation=generation, now=at)
    if done:
        conds = set_condition(
            conds, Type.READY, "True", Reason.COMPLETED, message, generation=generation, now=at
        )

    before = find(old.conditions, Type.STALLED)
    if stalled and not (before is not None and before.status == "True"):
        events.append(Event("Warning", Reason.PROGRESS_DEADLINE_EXCEEDED, message))
    if phase == "Paused" and old.phase != "Paused":
        events.append(Event("Normal", reason, message))
    if old.phase == "Paused" and phase == "Progressing":
        events.append(Event("Normal", Reason.PROGRESSING, f"resumed: {message}"))
    if done and old.phase != "Completed":
        events.append(Event("Normal", Reason.COMPLETED, message))
    tie_before = find(old.conditions, Type.DEVICES_SKIPPED)
    if ties and not (tie_before is not None and tie_before.reason == Reason.PRIORITY_TIE):
        events.append(Event("Warning", Reason.PRIORITY_TIE, f"{ties} device(s) tied"))

    waves = []
    for index, weight, size in wave_sizes:
        w_updated, w_healthy, w_failed, w_offline = _counts(states[:size], written)
        waves.append(
            WaveStatus(
                step=index,
                weight=weight,
                devices=size,
                updated=w_updated,
                healthy=w_healthy,
                failed=w_failed,
                offline=w_offline,
            )
        )
    target = p.target
    return RolloutStatus(
        observed_generation=generation,
        conditions=conds,
        phase=phase,
        current_step=p.step,
        counts=DeviceCounts(
            selected=len(states),
            updated=updated,
            healthy=healthy,
            failed=failed,
            pending=len(states) - updated,
            offline=offline,
            lost=len(lost),
            skipped=len(skipped),
        ),
        message=message[:4096],
        target=target,
        stable_version=stable or old.stable_version,
        canary_version=target.version if target else None,
        started_at=p.started_at,
        step_started_at=p.step_started_at,
        healthy_since=p.healthy_since,
        last_progress_at=p.last_progress_at,
        waves=waves[:21],
        failed_devices=p.failed_devices[:50],
        lost_devices=list(lost)[:50],
        retry_token=p.retry_token,
    )


def failed(
    old: RolloutStatus | None, *, generation: int, failure: Failure, now: datetime.datetime
) -> RolloutStatus:
    """The status of a pass that failed: the rest of the status is kept; a permanent
    failure (e.g. a spec the models refuse) stalls until the spec changes, a temporary
    one keeps ``Reconciling=True`` and is retried on the next pass."""
    status = old or RolloutStatus()
    at = rfc3339(now)
    conds = mark_failure(
        status.conditions, reason=failure.reason, message=failure.message,
        permanent=failure.permanent, generation=generation, now=at,
    )  # fmt: skip
    conds = summarise_ready(conds, (Type.PROGRESSING,), generation=generation, now=at)
    update: dict[str, object] = {"conditions": conds, "message": failure.message[:4096]}
    if failure.permanent:
        update["observed_generation"] = generation
    return status.model_copy(update=update)
