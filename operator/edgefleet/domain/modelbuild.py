"""InferenceModel status through a build: under way, done, failed, still current.

Pure functions of the old status (and an injectable ``now``): each returns a new status
with conditions set and Ready summarised in one place
(:func:`edgefleet.domain.conditions.summarise_ready`, waiting for :data:`REQUIRED`). A
finished build records its digests and keeps the previous index in the history (at most
:data:`HISTORY_LIMIT` entries). What happens to a finished build afterwards (drift, a
failed re-check) is :mod:`edgefleet.domain.modelstatus`.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgefleet.api.conditions import Reason, Type
from edgefleet.api.inferencemodel import BuiltImage, HistoryEntry, InferenceModelStatus
from edgefleet.domain.conditions import (
    is_true,
    mark_failure,
    mark_progress,
    now_rfc3339,
    set_condition,
    summarise_ready,
)

__all__ = [
    "HISTORY_LIMIT",
    "REQUIRED",
    "building",
    "failed",
    "is_current",
    "succeeded",
    "up_to_date",
]

#: What Ready waits for.
REQUIRED = (Type.BUILT, Type.SIGNED)
HISTORY_LIMIT = 10


def is_current(status: InferenceModelStatus | None, build_key: str) -> bool:
    """Whether ``status`` already describes a finished build with ``build_key``."""
    return (
        status is not None
        and status.build_key == build_key
        and is_true(status.conditions, Type.BUILT)
        and is_true(status.conditions, Type.SIGNED)
    )


def building(
    status: InferenceModelStatus | None, *, generation: int, build_key: str, now: str | None = None
) -> InferenceModelStatus:
    """A build of ``build_key`` has started."""
    old = status or InferenceModelStatus()
    at = now or now_rfc3339()
    conds = mark_progress(
        old.conditions,
        reconciling="True",
        reason=Reason.BUILDING,
        message=f"building {build_key[:19]}",
        generation=generation,
        now=at,
    )
    conds = summarise_ready(conds, REQUIRED, generation=generation, now=at)
    return old.model_copy(update={"conditions": conds, "build_key": old.build_key})


def succeeded(
    status: InferenceModelStatus | None,
    *,
    generation: int,
    build_key: str,
    version: str,
    repository: str,
    index_digest: str,
    images: Sequence[BuiltImage],
    now: str | None = None,
) -> InferenceModelStatus:
    """The build finished: digests recorded, the previous index kept in history."""
    old = status or InferenceModelStatus()
    at = now or now_rfc3339()
    history = list(old.history)
    if old.index_digest and old.index_digest != index_digest:
        previous = old.history[0].version if old.history else None
        prior_version = next(
            (h.version for h in old.history if h.index_digest == old.index_digest),
            previous or "unknown",
        )
        history = [h for h in history if h.index_digest != old.index_digest]
        history.insert(
            0, HistoryEntry(version=prior_version, index_digest=old.index_digest, built_at=at)
        )
    history = [h for h in history if h.index_digest != index_digest]
    history.insert(0, HistoryEntry(version=version, index_digest=index_digest, built_at=at))
    history = _dedupe(history)[:HISTORY_LIMIT]
    message = f"{len(images)} platform image(s) and the index pushed to {repository}"
    conds = set_condition(
        old.conditions,
        Type.BUILT,
        "True",
        Reason.BUILD_SUCCEEDED,
        message,
        generation=generation,
        now=at,
    )
    conds = set_condition(
        conds,
        Type.SIGNED,
        "True",
        Reason.SIGNED,
        "every manifest and the index carry a cosign signature",
        generation=generation,
        now=at,
    )
    conds = mark_progress(
        conds, reconciling="False", reason=Reason.RECONCILED, generation=generation, now=at
    )
    conds = summarise_ready(conds, REQUIRED, generation=generation, now=at)
    return InferenceModelStatus(
        observed_generation=generation,
        conditions=conds,
        repository=repository,
        index_digest=index_digest,
        images=list(images),
        build_key=build_key,
        history=history,
    )


def failed(
    status: InferenceModelStatus | None,
    *,
    generation: int,
    reason: str,
    message: str,
    permanent: bool,
    now: str | None = None,
) -> InferenceModelStatus:
    """The build failed; a permanent failure stalls until the spec changes."""
    old = status or InferenceModelStatus()
    at = now or now_rfc3339()
    conds = set_condition(
        old.conditions, Type.BUILT, "False", reason, message, generation=generation, now=at
    )
    conds = mark_failure(
        conds, reason=reason, message=message, permanent=permanent, generation=generation, now=at
    )
    conds = summarise_ready(conds, REQUIRED, generation=generation, now=at)
    update: dict[str, object] = {"conditions": conds}
    if permanent:
        update["observed_generation"] = generation
    return old.model_copy(update=update)


def up_to_date(
    status: InferenceModelStatus, *, generation: int, now: str | None = None
) -> InferenceModelStatus:
    """The build is current and its images are in the registry: nothing to do."""
    at = now or now_rfc3339()
    conds = mark_progress(
        status.conditions,
        reconciling="False",
        reason=Reason.RECONCILED,
        generation=generation,
        now=at,
    )
    conds = summarise_ready(conds, REQUIRED, generation=generation, now=at)
    return status.model_copy(update={"conditions": conds, "observed_generation": generation})


def _dedupe(history: list[HistoryEntry]) -> list[HistoryEntry]:
    seen: set[str] = set()
    out = []
    for entry in history:
        if entry.index_digest not in seen:
            seen.add(entry.index_digest)
            out.append(entry)
    return out
