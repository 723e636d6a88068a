"""One reconcile pass of a Rollout as a pure function: the world in, a decision out.

:func:`decide` takes the Rollout, its InferenceModel, the EdgeDevices of its namespace,
the other Rollouts there and the time, and returns the complete new status, the
device writes to make and the Events to post. Everything it needs to resume lives in
the API server (device ``desired``/``previous`` entries and the Rollout status), so a
restart at any point recomputes the same decision: a device whose desired entry
already equals what the rollout wants is never written again, and none is skipped.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from edgefleet.api.conditions import Reason, Type
from edgefleet.api.edgedevice import DesiredWorkload, EdgeDevice
from edgefleet.api.inferencemodel import InferenceModel
from edgefleet.api.meta import parse_duration
from edgefleet.api.rollout import DeviceNote, Rollout, RolloutStatus
from edgefleet.domain.conditions import find
from edgefleet.domain.rollout import plan, writes
from edgefleet.domain.rollout.events import Event
from edgefleet.domain.rollout.health import DeviceState, parse_time
from edgefleet.domain.rollout.progress import advance
from edgefleet.domain.rollout.report import Outcome, conclude, rfc3339
from edgefleet.domain.rollout.state import Decision, Progress
from edgefleet.domain.rollout.views import DeviceView, Memo, context, views

__all__ = ["PROMOTE_ANNOTATION", "RETRY_ANNOTATION", "Decision", "Event", "World", "decide"]

PROMOTE_ANNOTATION = "edgefleet.io/promote"
RETRY_ANNOTATION = "edgefleet.io/retry"
MAX_NOTES = 50


@dataclass(frozen=True)
class World:
    """What a pass sees: the rollout, its model, its namespace's devices and rollouts."""

    rollout: Rollout
    model: InferenceModel | None
    devices: Sequence[EdgeDevice]
    rivals: Sequence[Rollout]
    now: datetime.datetime
    max_writes: int = 1000
    """Assignments per pass at most, so status stays current during a large wave."""
    in_flight: frozenset[str] = frozenset()
    """Devices whose write an earlier pass made and the API server has not yet answered:
    counted as assigned, never written again until the answer is in ``devices``."""
    memo: Memo | None = None
    """Views from earlier passes of this rollout (only the cost changes, never the result)."""


@dataclass
class _Selection:
    devices: list[EdgeDevice]
    expected: list[DesiredWorkload]
    states: list[DeviceState]
    skipped: list[DeviceNote]
    lost: list[DeviceNote]
    ties: int
    stable: str | None


def _select(chosen: list[DeviceView], all_views: list[DeviceView]) -> _Selection:
    chosen.sort(key=lambda v: v.order)
    versions: Counter[str] = Counter(v.stable for v in chosen if v.stable is not None)
    return _Selection(
        [v.device for v in chosen],
        [v.expected for v in chosen if v.expected is not None],
        [v.state for v in chosen if v.state is not None],
        [v.note for v in all_views if v.kind == "skipped" and v.note is not None],
        [v.note for v in all_views if v.kind == "lost" and v.note is not None],
        sum(v.tie for v in all_views),
        versions.most_common(1)[0][0] if versions else None,
    )


def _rollbacks(all_views: list[DeviceView], in_flight: frozenset[str]) -> list[writes.DeviceWrite]:
    return [
        writes.rollback(v.device, v.rollback)
        for v in all_views
        if v.rollback is not None and v.device.metadata.name not in in_flight
    ]


def decide(w: World) -> Decision:
    """The new status, device writes and Events of one pass over ``w.rollout``."""
    ro, now = w.rollout, w.now
    old = ro.status or RolloutStatus()
    at = rfc3339(now)
    events: list[Event] = []
    p = Progress.of(old, at)
    aborted = find(old.conditions, Type.ABORTED)
    was_aborted = aborted is not None and aborted.status == "True"
    token = ro.metadata.annotations.get(RETRY_ANNOTATION)
    retry = token is not None and token != old.retry_token and not ro.spec.abort
    cleared = was_aborted and aborted is not None and aborted.reason == Reason.ABORTED
    if (was_aborted and (retry or (cleared and not ro.spec.abort))) or (
        retry and old.phase == "Failed"
    ):
        p = Progress.fresh(at)
        was_aborted = False
        events.append(Event("Normal", Reason.RETRIED, "rollout restarted from the first step"))
    if token is not None:
        p.retry_token = token

    # The target: pinned once; a new version in spec pins again and starts a new attempt
    # from the first step, out of an abort too. The attempt starts over at once, also
    # while the new version is not built yet (Git commits model and rollout together):
    # a step carried over from the old attempt would give the new version to every
    # device at once, past its canary and its failure threshold.
    problem: plan.TargetProblemError | None = None
    if p.target is None or p.target.version != ro.spec.model.version:
        if p.target is not None or p.step > 0:
            p = Progress.fresh(at, retry_token=p.retry_token)
            was_aborted = False
        try:
            pinned = plan.pin_target(ro, w.model)
        except plan.TargetProblemError as exc:
            problem = exc
        else:
            p.target = pinned
            events.append(
                Event(
                    "Normal",
                    Reason.WAVE_STARTED,
                    f"rolling out {pinned.version} ({pinned.index_digest[:19]})",
                )
            )

    outcome = Outcome(phase="Pending", reason=Reason.PROGRESSING, message="")
    decision = Decision(RolloutStatus())
    started = parse_time(p.started_at)
    all_views = views(context(ro, w.rivals, p.target, started), w.devices, w.memo)
    chosen = [v for v in all_views if v.kind == "chosen"]
    sel = _select(chosen, all_views) if p.target is not None else None
    states: list[DeviceState] = sel.states if sel is not None else []

    failed = [s for s in states if s.state == "failed"]
    updated = sum(s.state != "pending" for s in states)
    if ro.spec.abort and not was_aborted:
        outcome = Outcome("Aborted", Reason.ABORTED, "aborted by spec.abort")
    elif was_aborted and aborted is not None:
        outcome = Outcome("Aborted", aborted.reason, aborted.message)
    elif (
        failed
        and p.step < len(plan.steps_of(ro))  # a completed rollout never aborts by itself
        and len(failed) >= plan.failure_limit(ro, updated)
    ):
        names = ", ".join(f"{s.name} ({s.reason})" for s in failed[:5])
        outcome = Outcome(
            "Aborted",
            Reason.FAILURE_THRESHOLD_EXCEEDED,
            f"{len(failed)} of {updated} updated devices failed (threshold"
            f" {ro.spec.failure_threshold}, at least {ro.spec.min_failed_devices}): {names}",
        )
    elif problem is not None:
        outcome = Outcome("Pending", problem.reason, problem.message, waiting=True)
    elif sel is not None and not sel.devices and p.step < len(plan.steps_of(ro)):
        why = f"; {len(sel.lost)} lost to other rollouts" if sel.lost else ""
        outcome = Outcome(
            "Pending", Reason.NO_DEVICES, f"the selector matches no eligible device{why}", True
        )
    elif sel is not None and p.target is not None:
        outcome = advance(
            p,
            ro,
            sel.devices,
            sel.expected,
            states,
            now,
            decision,
            events,
            promoted=_promoted(ro),
            max_writes=w.max_writes,
            in_flight=w.in_flight,
        )

    if outcome.phase == "Aborted":
        if not was_aborted:
            p.failed_devices = [
                DeviceNote(name=s.name, reason=s.reason or Reason.DEVICE_FAILED, message=s.message)
                for s in failed[:MAX_NOTES]
            ]
            events.append(Event("Warning", outcome.reason, outcome.message))
        decision.writes = _rollbacks(all_views, w.in_flight)
        if decision.writes:
            events.append(
                Event(
                    "Warning",
                    Reason.ROLLED_BACK,
                    f"rolling back {len(decision.writes)} device(s) to their previous version",
                )
            )
    elif failed:
        p.failed_devices = [
            DeviceNote(name=s.name, reason=s.reason or Reason.DEVICE_FAILED, message=s.message)
            for s in failed[:MAX_NOTES]
        ]

    decision.status = conclude(
        old,
        p,
        outcome,
        generation=ro.metadata.generation or 0,
        now=now,
        deadline=parse_duration(ro.spec.progress_deadline),
        states=states,
        written={x.name for x in decision.writes if x.kind == "assign"} | w.in_flight,
        wave_sizes=_wave_sizes(ro, len(states)),
        skipped=sel.skipped if sel else [],
        lost=sel.lost if sel else [],
        ties=sel.ties if sel else 0,
        stable=sel.stable if sel else None,
        events=events,
    )
    decision.events = [Event(e.type, e.reason, e.message[:1024]) for e in events]
    return decision


def _wave_sizes(ro: Rollout, selected: int) -> list[tuple[int, int, int]]:
    return [
        (s.index, s.weight, plan.wave_size(s.weight, selected))
        for s in plan.steps_of(ro)
        if s.weight is not None
    ]


def _promoted(ro: Rollout) -> int | None:
    value = ro.metadata.annotations.get(PROMOTE_ANNOTATION, "")
    return int(value) if value.isdigit() else None
