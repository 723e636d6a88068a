"""Rollout planning and decisions, pure: select, order, waves, gates, abort, rollback.

:func:`decide` is the whole pass; the modules below it are its parts:
:mod:`.selection` (selector, order, overlap), :mod:`.plan` (steps, budgets,
thresholds, the pinned target), :mod:`.health` (a device's state and the gate),
:mod:`.progress` (walking the steps), :mod:`.writes` (assignment and rollback),
:mod:`.report` (status and conditions), :mod:`.events` (what to post),
:mod:`.state` (the position a pass carries and the decision it returns),
:mod:`.views` (per-device assessments, memoised by resourceVersion).
"""

from __future__ import annotations

from edgefleet.domain.rollout.decide import (
    PROMOTE_ANNOTATION,
    RETRY_ANNOTATION,
    Decision,
    Event,
    World,
    decide,
)
from edgefleet.domain.rollout.writes import FIELD_MANAGER, DeviceWrite

__all__ = [
    "FIELD_MANAGER",
    "PROMOTE_ANNOTATION",
    "RETRY_ANNOTATION",
    "Decision",
    "DeviceWrite",
    "Event",
    "World",
    "decide",
]
