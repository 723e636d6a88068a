"""What a rollout pass carries and produces, as plain data.

:class:`Progress` is the rollout's position (step, the times that gate it, the
pinned target, the devices that failed), read from its status at the start of a
pass and written back at the end; :class:`Decision` is a pass's result: the new
status, the device writes and the Events to post. :mod:`.decide` makes one,
:mod:`.progress` moves the other, :mod:`.report` turns both into status.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgefleet.api.rollout import DeviceNote, RolloutStatus, RolloutTarget
from edgefleet.domain.rollout import writes
from edgefleet.domain.rollout.events import Event

__all__ = ["Decision", "Progress"]


@dataclass
class Progress:
    """The rollout's position, carried in its status between passes."""

    step: int
    started_at: str
    step_started_at: str
    last_progress_at: str
    healthy_since: str | None = None
    target: RolloutTarget | None = None
    failed_devices: list[DeviceNote] = field(default_factory=list)
    retry_token: str | None = None

    @classmethod
    def of(cls, old: RolloutStatus, at: str) -> Progress:
        return cls(
            step=old.current_step or 0,
            started_at=old.started_at or at,
            step_started_at=old.step_started_at or at,
            last_progress_at=old.last_progress_at or at,
            healthy_since=old.healthy_since,
            target=old.target,
            failed_devices=list(old.failed_devices),
            retry_token=old.retry_token,
        )

    @classmethod
    def fresh(cls, at: str, retry_token: str | None = None) -> Progress:
        return cls(0, at, at, at, retry_token=retry_token)


@dataclass
class Decision:
    """A pass's result: the status to write, the device writes, the Events to post."""

    status: RolloutStatus
    writes: list[writes.DeviceWrite] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
