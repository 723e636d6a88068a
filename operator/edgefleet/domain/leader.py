"""Leader election on a Lease: the pure decision, given what the Lease says and the time.

Only one operator replica reconciles; the others wait on the Lease
(``coordination.k8s.io/v1``), the way controller-runtime and client-go do it: a
holder renews before ``leaseDurationSeconds`` pass; a Lease not renewed for that long
may be taken by anyone, by an update carrying the resourceVersion read (so of two
candidates exactly one wins); a leader that cannot renew within its renew deadline
stops (the process exits and is restarted) rather than risk two reconcilers.
kopf's own peering is not used: with equal priorities it freezes every replica.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

__all__ = ["Action", "LeaseRecord", "decide"]


class Action(enum.Enum):
    CREATE = "create"  # no Lease yet: create it, holding it
    RENEW = "renew"  # we hold it: renew
    TAKE = "take"  # held by someone who stopped renewing (or released it): take it over
    WAIT = "wait"  # someone else holds it and is alive


@dataclass(frozen=True)
class LeaseRecord:
    holder: str | None
    renew_time: datetime.datetime | None
    duration_seconds: int
    transitions: int = 0


def decide(record: LeaseRecord | None, me: str, now: datetime.datetime) -> Action:
    """What a candidate named ``me`` should do about the Lease at ``now``."""
    if record is None:
        return Action.CREATE
    if record.holder == me:
        return Action.RENEW
    if not record.holder or record.renew_time is None:
        return Action.TAKE
    expiry = record.renew_time + datetime.timedelta(seconds=record.duration_seconds)
    return Action.TAKE if now >= expiry else Action.WAIT
