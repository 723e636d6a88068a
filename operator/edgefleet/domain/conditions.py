"""Conditions: set one, summarise Ready, in one place for every kind.

Follows ``meta.SetStatusCondition``: ``lastTransitionTime`` changes only when the
status does, and kstatus semantics — ``Reconciling`` while work is under way,
``Stalled`` when only a human can help, ``Ready`` the summary.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from edgefleet.api.conditions import Reason, Type
from edgefleet.api.meta import Condition, ConditionStatus

__all__ = [
    "find",
    "is_true",
    "mark_failure",
    "mark_progress",
    "now_rfc3339",
    "set_condition",
    "summarise_ready",
]


def now_rfc3339() -> str:
    return (
        datetime.datetime.now(datetime.UTC)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z")
    )


def find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    *,
    generation: int | None = None,
    now: str | None = None,
) -> list[Condition]:
    """A new list with ``type_`` set; other conditions keep their order."""
    previous = find(conditions, type_)
    transition = (
        previous.last_transition_time
        if previous is not None and previous.status == status
        else (now or now_rfc3339())
    )
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],
        observed_generation=generation,
        last_transition_time=transition,
    )
    out = [updated if c.type == type_ else c for c in conditions]
    if previous is None:
        out.append(updated)
    return out


def mark_progress(
    conditions: Sequence[Condition],
    *,
    reconciling: ConditionStatus,
    reason: str,
    message: str = "",
    generation: int | None,
    now: str,
) -> list[Condition]:
    """kstatus for an object that is not stuck: ``Reconciling`` as given (True while
    work is under way or retried, False once done) and ``Stalled=False``, both with
    ``reason``."""
    conds = set_condition(
        conditions, Type.RECONCILING, reconciling, reason, message, generation=generation, now=now
    )
    return set_condition(conds, Type.STALLED, "False", reason, generation=generation, now=now)


def mark_failure(
    conditions: Sequence[Condition],
    *,
    reason: str,
    message: str,
    permanent: bool,
    generation: int | None,
    now: str,
    waiting: str = "waiting for a spec change",
) -> list[Condition]:
    """kstatus after a failed pass, the same for every kind: a permanent failure is
    ``Stalled=True`` and ``Reconciling=False`` (``waiting``: what would unstick it); a
    temporary one is ``Reconciling=True`` (retrying) and ``Stalled=False``."""
    if permanent:
        conds = set_condition(
            conditions, Type.STALLED, "True", reason, message, generation=generation, now=now
        )
        return set_condition(
            conds, Type.RECONCILING, "False", reason, waiting, generation=generation, now=now
        )
    return mark_progress(
        conditions,
        reconciling="True",
        reason=reason,
        message=f"retrying: {message}",
        generation=generation,
        now=now,
    )


def summarise_ready(
    conditions: Sequence[Condition],
    required: Sequence[str],
    *,
    generation: int | None = None,
    now: str | None = None,
) -> list[Condition]:
    """Set Ready from ``required`` conditions, Reconciling and Stalled.

    Ready is True only when every required condition is True and nothing is
    reconciling or stalled; otherwise it carries the reason and message of the first
    condition that is in the way (Stalled first, then the required ones in order).
    """
    stalled = find(conditions, Type.STALLED)
    if stalled is not None and stalled.status == "True":
        return set_condition(
            conditions,
            Type.READY,
            "False",
            stalled.reason,
            stalled.message,
            generation=generation,
            now=now,
        )
    for type_ in required:
        cond = find(conditions, type_)
        if cond is None or cond.status != "True":
            reason = cond.reason if cond is not None else Reason.PROGRESSING
            message = cond.message if cond is not None else f"waiting for {type_}"
            status: ConditionStatus = (
                "False" if cond is not None and cond.status == "False" else "Unknown"
            )
            return set_condition(
                conditions, Type.READY, status, reason, message, generation=generation, now=now
            )
    reconciling = find(conditions, Type.RECONCILING)
    if reconciling is not None and reconciling.status == "True":
        return set_condition(
            conditions,
            Type.READY,
            "Unknown",
            reconciling.reason,
            reconciling.message,
            generation=generation,
            now=now,
        )
    return set_condition(
        conditions, Type.READY, "True", Reason.RECONCILED, "", generation=generation, now=now
    )
