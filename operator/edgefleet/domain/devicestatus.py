"""EdgeDevice status as the gateway owns it, computed in one pure function.

The gateway writes ``status.enrollment``, ``current``, ``currentVersion``, ``facts``,
``lastSeen``, ``reportSeq``, ``appliedDocument`` and the conditions ``Enrolled``,
``Online``, ``Ready``, ``UpdateFailed``, ``DuplicateIdentity``, ``Reconciling`` and
``Stalled`` (server-side apply, field manager ``edgefleet-gateway``). Everything it
writes is a function of what the API server already holds plus one
:class:`Observation` (what this replica just learned), so any replica computes the
same status and a heartbeat that changes nothing computes an identical status: no
write. ``lastSeen`` moves only every ``last_seen_interval`` (coarse, the node-lease
lesson); ``Online`` changes only on a real transition. When this cannot be computed (a
body the models refuse, an exception here) the status is
:func:`edgefleet.domain.devicefailure.from_failure` instead (the reconcile pattern).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any, Final

from edgefleet.api.conditions import Reason, Type
from edgefleet.api.edgedevice import CurrentWorkload, DesiredWorkload, EdgeDevice, Enrollment
from edgefleet.api.meta import Condition, ConditionStatus
from edgefleet.domain.conditions import find, set_condition
from edgefleet_node.protocol import wire
from edgefleet_node.protocol.desired import config_version

__all__ = [
    "GATEWAY_CONDITIONS",
    "DeviceReason",
    "DeviceType",
    "Observation",
    "compute",
    "online_holder",
    "summary",
]


class DeviceType:
    """EdgeDevice condition types beyond the shared ones."""

    DUPLICATE_IDENTITY: Final = "DuplicateIdentity"


class DeviceReason:
    """EdgeDevice condition reasons the gateway sets."""

    ENROLLED: Final = "Enrolled"
    PLATFORM_MISMATCH: Final = "PlatformMismatch"
    REVOKED: Final = "Revoked"
    CERTIFICATE_EXPIRED: Final = "CertificateExpired"
    POLLING: Final = "Polling"
    NEVER_SEEN: Final = "NeverSeen"
    NO_FAILURE: Final = "NoFailure"
    UNIQUE: Final = "Unique"
    DUPLICATE_IDENTITY: Final = "DuplicateIdentity"
    OFFLINE: Final = "Offline"
    UPDATING: Final = "Updating"
    UNHEALTHY: Final = "WorkloadUnhealthy"


GATEWAY_CONDITIONS: Final = (
    Type.ENROLLED,
    Type.ONLINE,
    Type.READY,
    Type.UPDATE_FAILED,
    DeviceType.DUPLICATE_IDENTITY,
    Type.RECONCILING,
    Type.STALLED,
)

_HOLDER = re.compile(r"^polling via gateway replica (?P<replica>[A-Za-z0-9._-]{1,128})$")


@dataclass(frozen=True)
class Observation:
    """What one gateway replica learned; ``None`` fields leave the stored value as is."""

    now: datetime.datetime
    online: bool | None = None  # True: polling here now; False: heartbeat missed
    replica: str = ""  # the replica that observed it (named in the Online condition)
    seen: bool = False  # the device talked to us (may move lastSeen, coarsely)
    enrollment: Enrollment | None = None  # a new enrolment or renewal
    fresh: bool = False  # ``enrollment`` comes from a bootstrap token (not a renewal)
    enrollment_refused: tuple[str, str] | None = None  # (reason, message) for Enrolled=False
    current: list[CurrentWorkload] | None = None  # from the newest report
    facts: dict[str, Any] | None = None
    report_seq: int | None = None
    applied_document: int | None = None
    agent_conditions: tuple[tuple[str, ConditionStatus, str, str], ...] | None = None
    duplicate: str | None = None  # a message: a second installation presented this identity


def online_holder(device: EdgeDevice) -> str | None:
    """The replica the stored ``Online=True`` condition names, if any."""
    status = device.status
    cond = find(status.conditions, Type.ONLINE) if status is not None else None
    if cond is None or cond.status != "True":
        return None
    match = _HOLDER.match(cond.message)
    return match["replica"] if match else None


def summary(items: list[DesiredWorkload] | list[CurrentWorkload]) -> str | None:
    """``model=version,…`` for printer columns (at most 256 characters)."""
    if not items:
        return None
    text = ",".join(sorted(f"{w.model}={w.version}" for w in items))
    return text if len(text) <= 256 else text[:253] + "..."


def _merged_config_version(device: EdgeDevice, desired: DesiredWorkload) -> str:
    return config_version({**desired.config, **device.spec.config})


def _ready_workloads(device: EdgeDevice, current: list[CurrentWorkload]) -> tuple[bool, str]:
    desired = device.status.desired if device.status is not None else []
    by_model = {c.model: c for c in current}
    for want in desired:
        have = by_model.get(want.model)
        if have is None or have.image_digest != want.image_digest:
            return False, f"{want.model}: waiting for {want.version} ({want.image_digest[:19]})"
        if have.health != "Healthy":
            return False, f"{want.model}: workload is {have.health}"
        if have.config_version not in (None, _merged_config_version(device, want)):
            return False, f"{want.model}: configuration not applied yet"
    return True, ""


def compute(
    device: EdgeDevice,
    obs: Observation,
    *,
    last_seen_interval: datetime.timedelta,
) -> dict[str, Any]:
    """The gateway-owned part of ``status`` (camelCase, ready for server-side apply)."""
    stored = device.status
    now_text = wire.format_time(obs.now)
    generation = device.metadata.generation
    conds: list[Condition] = [
        c for c in (stored.conditions if stored else []) if c.type in GATEWAY_CONDITIONS
    ]

    def put(type_: str, status: ConditionStatus, reason: str, message: str = "") -> None:
        nonlocal conds
        previous = find(conds, type_)
        if (
            previous is not None
            and (previous.status, previous.reason, previous.message) == (status, reason, message)
            and previous.observed_generation == generation
        ):
            return  # unchanged: keep it byte for byte (no write)
        conds = set_condition(
            conds, type_, status, reason, message, generation=generation, now=now_text
        )

    enrollment = obs.enrollment or (stored.enrollment if stored else None)
    current = obs.current if obs.current is not None else list(stored.current if stored else [])
    # -- Enrolled --------------------------------------------------------------
    enrolled = find(conds, Type.ENROLLED)
    if obs.enrollment_refused is not None:
        put(Type.ENROLLED, "False", *obs.enrollment_refused)
    elif enrollment is None:
        if enrolled is None or enrolled.reason != DeviceReason.PLATFORM_MISMATCH:
            put(Type.ENROLLED, "False", Reason.AWAITING_ENROLLMENT, "no bootstrap token used yet")
    elif enrollment.revoked:
        put(Type.ENROLLED, "False", DeviceReason.REVOKED, "revoked: enrol again with a new token")
    elif wire.parse_time(enrollment.not_after, "notAfter") <= obs.now:
        put(
            Type.ENROLLED,
            "False",
            DeviceReason.CERTIFICATE_EXPIRED,
            f"the certificate expired at {enrollment.not_after}: enrol again with a new token",
        )
    elif obs.enrollment is not None or enrolled is None or enrolled.status != "True":
        put(
            Type.ENROLLED,
            "True",
            DeviceReason.ENROLLED,
            f"certificate until {enrollment.not_after}",
        )
    # -- Online ----------------------------------------------------------------
    if obs.online is True:
        put(Type.ONLINE, "True", DeviceReason.POLLING, f"polling via gateway replica {obs.replica}")
    elif obs.online is False:
        put(Type.ONLINE, "False", Reason.HEARTBEAT_MISSED, "no poll within the grace period")
    elif find(conds, Type.ONLINE) is None:
        put(Type.ONLINE, "Unknown", DeviceReason.NEVER_SEEN, "the device has not polled yet")
    # -- UpdateFailed (the agent's word) ---------------------------------------
    agent = obs.agent_conditions
    if agent is not None:
        failed = next((c for c in agent if c[0] == Type.UPDATE_FAILED), None)
        if failed is None:
            put(Type.UPDATE_FAILED, "False", DeviceReason.NO_FAILURE)
        else:
            put(Type.UPDATE_FAILED, failed[1], failed[2], failed[3])
    elif find(conds, Type.UPDATE_FAILED) is None:
        put(Type.UPDATE_FAILED, "False", DeviceReason.NO_FAILURE)
    # -- DuplicateIdentity ------------------------------------------------------
    if obs.duplicate is not None:
        put(DeviceType.DUPLICATE_IDENTITY, "True", DeviceReason.DUPLICATE_IDENTITY, obs.duplicate)
    elif obs.fresh or find(conds, DeviceType.DUPLICATE_IDENTITY) is None:
        put(DeviceType.DUPLICATE_IDENTITY, "False", DeviceReason.UNIQUE)
    # -- kstatus: Stalled, Reconciling, Ready ----------------------------------
    _summarise(device, conds, current, put)
    out: dict[str, Any] = {
        "conditions": [c.wire() for c in sorted(conds, key=lambda c: c.type)],
        "current": [c.wire() for c in sorted(current, key=lambda c: c.model)],
    }
    if generation is not None:
        # The gateway is the EdgeDevice's status owner: with the CRD's default of 0, an
        # observedGeneration behind metadata.generation makes kstatus (Flux, Argo CD)
        # read the device as InProgress, so it follows every spec change it has seen.
        out["observedGeneration"] = generation
    if enrollment is not None:
        # ``revoked`` belongs to `edgefleet device revoke` (field manager edgefleet-cli);
        # the gateway sets it (to false) only with a new enrolment.
        out["enrollment"] = enrollment.wire()
        if not obs.fresh:
            out["enrollment"].pop("revoked", None)
    if (version := summary(current)) is not None:
        out["currentVersion"] = version
    facts = obs.facts
    if facts is None and stored is not None and stored.facts is not None:
        facts = stored.facts.wire()
    if facts:
        out["facts"] = facts
    seq = obs.report_seq if obs.report_seq is not None else (stored.report_seq if stored else None)
    if seq is not None:
        out["reportSeq"] = seq
    applied = obs.applied_document
    if applied is None and stored is not None:
        applied = stored.applied_document
    if applied is not None:
        out["appliedDocument"] = applied
    last_seen = stored.last_seen if stored else None
    if obs.seen and _moves(device, obs, last_seen, last_seen_interval):
        last_seen = now_text
    if last_seen is not None:
        out["lastSeen"] = last_seen
    return out


def _moves(
    device: EdgeDevice,
    obs: Observation,
    last_seen: str | None,
    interval: datetime.timedelta,
) -> bool:
    if last_seen is None:
        return True
    if wire.parse_time(last_seen, "lastSeen") + interval <= obs.now:
        return True
    # A transition to Online (from another holder or from offline) is written anyway:
    # let lastSeen ride along for free.
    holder = online_holder(device)
    return obs.online is True and holder != obs.replica


def _summarise(
    device: EdgeDevice,
    conds: list[Condition],
    current: list[CurrentWorkload],
    put: Any,
) -> None:
    stalled: tuple[str, str] | None = None
    for type_, bad in ((Type.ENROLLED, "False"), (Type.UPDATE_FAILED, "True"),
                       (DeviceType.DUPLICATE_IDENTITY, "True")):  # fmt: skip
        cond = find(conds, type_)
        if cond is not None and cond.status == bad and cond.reason != Reason.AWAITING_ENROLLMENT:
            stalled = (cond.reason, cond.message)
            break
    if stalled is not None:
        put(Type.STALLED, "True", *stalled)
    else:
        put(Type.STALLED, "False", Reason.RECONCILED)
    workloads_ok, why = _ready_workloads(device, current)
    online = find(conds, Type.ONLINE)
    is_online = online is not None and online.status == "True"
    if workloads_ok or stalled is not None or device.spec.suspended:
        put(Type.RECONCILING, "False", Reason.RECONCILED)
    else:
        put(Type.RECONCILING, "True", DeviceReason.UPDATING, why)
    enrolled = find(conds, Type.ENROLLED)
    if device.spec.suspended:
        put(Type.READY, "False", Reason.SUSPENDED, "spec.suspended is true: locked out")
    elif stalled is not None:
        put(Type.READY, "False", *stalled)
    elif enrolled is None or enrolled.status != "True":
        put(Type.READY, "False", Reason.AWAITING_ENROLLMENT, "not enrolled")
    elif not is_online:
        put(Type.READY, "False", DeviceReason.OFFLINE, online.message if online else "")
    elif not workloads_ok:
        put(Type.READY, "False", DeviceReason.UPDATING, why)
    else:
        put(Type.READY, "True", Reason.RECONCILED, "every desired workload runs and is healthy")
