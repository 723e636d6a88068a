"""EdgeDevice status after a failure: the gateway's ``from_failure``, pure.

The device half of the one reconcile pattern (``docs/design.md`` §Reconcile): every
failure of the gateway's status pass — a body the API models refuse (an object stored
before a rule existed), an unexpected exception in :func:`devicestatus.compute` — goes
through :func:`edgefleet.domain.failures.classify`, and this function turns the
:class:`Failure` into the gateway-owned status with the shared kstatus helper
(:func:`edgefleet.domain.conditions.mark_failure`): permanent ⇒ ``Stalled=True``,
temporary ⇒ ``Reconciling=True`` (retrying), ``Ready=False`` with the failure's reason
and message either way.

It works on the *stored* status as the API server holds it (a plain mapping), because
the object may not parse. Every other gateway-owned field is carried over unchanged, so
a server-side apply with the gateway's field manager keeps it; fields of other owners
(``desired``, ``desiredRevision``, ``previous``: the rollout controller;
``enrollment.revoked``: ``edgefleet device revoke``) are never included. The result is
a function of its inputs (``now`` only stamps a condition that changes status), so a
repeated failure computes what is stored already: no write.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Final

import pydantic

from edgefleet.api.conditions import Type
from edgefleet.api.meta import Condition
from edgefleet.domain.conditions import mark_failure, set_condition
from edgefleet.domain.devicestatus import GATEWAY_CONDITIONS
from edgefleet.domain.failures import Failure
from edgefleet_node.protocol import wire

__all__ = ["KEPT_FIELDS", "from_failure", "owned_part"]

#: Gateway-owned status fields a failure leaves as they are.
KEPT_FIELDS: Final = (
    "enrollment",
    "current",
    "currentVersion",
    "facts",
    "lastSeen",
    "reportSeq",
    "appliedDocument",
)


def _conditions(stored: Mapping[str, Any]) -> list[Condition]:
    raw = stored.get("conditions")
    out = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict) and item.get("type") in GATEWAY_CONDITIONS:
            try:
                out.append(Condition.model_validate(item))
            except pydantic.ValidationError:
                continue  # an unreadable condition of ours is rewritten below or dropped
    return out


def owned_part(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The gateway-owned part of a stored status, shaped as :func:`from_failure` returns
    it (to compare: equal means nothing to write)."""
    stored = stored if isinstance(stored, Mapping) else {}
    out: dict[str, Any] = {
        k: stored[k] for k in KEPT_FIELDS if k in stored and stored[k] not in (None, {}, [])
    }
    if isinstance(out.get("enrollment"), dict):
        out["enrollment"] = {k: v for k, v in out["enrollment"].items() if k != "revoked"}
    if isinstance(stored.get("observedGeneration"), int):
        out["observedGeneration"] = stored["observedGeneration"]
    out["conditions"] = [c.wire() for c in sorted(_conditions(stored), key=lambda c: c.type)]
    return out


def from_failure(
    stored: Mapping[str, Any] | None,
    *,
    generation: int | None,
    failure: Failure,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The gateway-owned status (camelCase, for server-side apply) after ``failure``."""
    out = owned_part(stored)
    at = wire.format_time(now)
    conds = mark_failure(
        _conditions(stored or {}),
        reason=failure.reason,
        message=failure.message,
        permanent=failure.permanent,
        generation=generation,
        now=at,
        waiting="waiting for a change of the EdgeDevice",
    )
    conds = set_condition(
        conds, Type.READY, "False", failure.reason, failure.message, generation=generation, now=at
    )
    out["conditions"] = [c.wire() for c in sorted(conds, key=lambda c: c.type)]
    if generation is not None:
        out["observedGeneration"] = generation
    else:
        out.pop("observedGeneration", None)
    return out
