"""InferenceModel status transitions, as pure functions of the old status.

The reconcile writes one of three states: a build under way, a build done, a build
failed. Each function returns a new status with conditions set and Ready summarised
in one place (:func:`edgefleet.domain.conditions.summarise_ready`).
The build transitions (:func:`building`, :func:`succeeded`, :func:`failed`,
:func:`up_to_date`, :func:`is_current`) live in :mod:`edgefleet.domain.modelbuild` and
are re-exported here; this module holds what happens to a finished build afterwards
(:func:`drifted`, :func:`check_retrying`, :func:`check_stalled`) and
:func:`from_failure`, the one place a pass's failure meets the status.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgefleet.api.conditions import Reason, Type
from edgefleet.api.inferencemodel import InferenceModelStatus
from edgefleet.domain.conditions import (
    is_true,
    mark_progress,
    now_rfc3339,
    set_condition,
    summarise_ready,
)
from edgefleet.domain.failures import Failure
from edgefleet.domain.modelbuild import (
    HISTORY_LIMIT,
    REQUIRED,
    building,
    failed,
    is_current,
    succeeded,
    up_to_date,
)

__all__ = [
    "HISTORY_LIMIT",
    "REQUIRED",
    "building",
    "check_retrying",
    "check_stalled",
    "drifted",
    "failed",
    "from_failure",
    "is_current",
    "last_build_ready",
    "succeeded",
    "up_to_date",
]


def drifted(
    status: InferenceModelStatus,
    *,
    generation: int,
    problems: Sequence[str],
    now: str | None = None,
) -> InferenceModelStatus:
    """The registry no longer holds what status says was built: Built is False."""
    conds = set_condition(
        status.conditions,
        Type.BUILT,
        "False",
        Reason.DRIFT_DETECTED,
        "; ".join(problems),
        generation=generation,
        now=now or now_rfc3339(),
    )
    return status.model_copy(update={"conditions": conds})


def last_build_ready(status: InferenceModelStatus | None, generation: int) -> bool:
    """Whether ``status`` holds a finished, signed build of spec ``generation``."""
    return (
        status is not None
        and status.index_digest is not None
        and status.observed_generation == generation
        and is_true(status.conditions, Type.BUILT)
        and is_true(status.conditions, Type.SIGNED)
    )


def check_retrying(
    status: InferenceModelStatus, *, generation: int, failure: Failure, now: str | None = None
) -> InferenceModelStatus:
    """The last build stays Ready; checking it against the registry failed for now.

    Used when a temporary failure (a registry outage, say) prevents a re-check of a
    model whose images were built and signed for this generation: the images are
    fine as far as anyone knows, so Built, Signed and Ready stay True and Ready's
    reason and message say that the check is retrying.
    """
    at = now or now_rfc3339()
    conds = mark_progress(
        status.conditions,
        reconciling="False",
        reason=Reason.CHECK_RETRYING,
        message=f"serving the last build; re-check retrying: {failure.message}",
        generation=generation,
        now=at,
    )
    conds = set_condition(
        conds,
        Type.READY,
        "True",
        Reason.CHECK_RETRYING,
        f"the last build is ready; checking it against the registry is retrying"
        f" ({failure.reason}: {failure.message})",
        generation=generation,
        now=at,
    )
    return status.model_copy(update={"conditions": conds})


def check_stalled(
    status: InferenceModelStatus, *, generation: int, failure: Failure, now: str | None = None
) -> InferenceModelStatus:
    """Checking a built model failed in a way no retry fixes (registry access denied).

    The images were built and signed, so Built and Signed stay True; Stalled is True
    with the reason, and Ready is False: the operator cannot vouch for the model
    until someone fixes what is wrong.
    """
    at = now or now_rfc3339()
    conds = set_condition(
        status.conditions,
        Type.STALLED,
        "True",
        failure.reason,
        failure.message,
        generation=generation,
        now=at,
    )
    conds = set_condition(
        conds,
        Type.RECONCILING,
        "False",
        failure.reason,
        "waiting for a fix",
        generation=generation,
        now=at,
    )
    conds = summarise_ready(conds, REQUIRED, generation=generation, now=at)
    return status.model_copy(update={"conditions": conds})


def from_failure(
    status: InferenceModelStatus | None,
    *,
    generation: int,
    failure: Failure,
    now: str | None = None,
) -> InferenceModelStatus:
    """The status after ``failure`` ended a pass (the one place failures meet status).

    A temporary failure of a model whose last build is ready for this generation keeps
    it Ready (:func:`check_retrying`), a permanent one stalls it but keeps Built and
    Signed (:func:`check_stalled`); any other failure is :func:`failed`.
    """
    if status is not None and last_build_ready(status, generation):
        if failure.temporary:
            return check_retrying(status, generation=generation, failure=failure, now=now)
        return check_stalled(status, generation=generation, failure=failure, now=now)
    return failed(
        status,
        generation=generation,
        reason=failure.reason,
        message=failure.message,
        permanent=failure.permanent,
        now=now,
    )
