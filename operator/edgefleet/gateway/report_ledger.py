"""Which report sequence numbers a gateway replica has taken, per device installation.

Agents number their reports (``seq``, growing, persisted) and resend what was not
acknowledged, so a batch may repeat reports that already arrived (an answer lost on
the way back) or follow a gap (reports lost, or dropped from a full offline queue).
:class:`ReportLedger` remembers, per device and agent installation (``instanceId``),
the newest seq this replica accepted, and sorts each batch's seqs into ``accepted``,
``duplicate`` (at or below the newest already taken: a resend, or out of order) and
``gap`` (numbers skipped before or inside the batch). The stored ``status.reportSeq``
is a floor for duplicates; gaps are counted only against seqs this replica took itself,
since ``reportSeq`` may lag (counter-only reports are written at most once per
``lastSeen`` interval) and another replica may have taken the seqs in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgefleet.clients.devicecache import DeviceKey

__all__ = ["ReportLedger", "Tally"]


@dataclass(frozen=True)
class Tally:
    accepted: int
    duplicate: int
    gap: int
    newest: int  # the newest seq known after this batch (what to acknowledge)


class ReportLedger:
    def __init__(self) -> None:
        self._taken: dict[DeviceKey, tuple[str, int]] = {}  # key -> (instance, newest seq)

    def known(self, key: DeviceKey, instance: str, stored: int) -> int:
        """The newest seq known for this installation: this replica's or the stored one."""
        mine = self._taken.get(key)
        return max(stored, mine[1] if mine and mine[0] == instance else 0)

    def tally(self, key: DeviceKey, instance: str, seqs: Sequence[int], stored: int) -> Tally:
        """Sort ``seqs`` (one batch) without remembering them (see :meth:`commit`)."""
        mine = self._taken.get(key)
        local = mine[1] if mine and mine[0] == instance else None
        newest = self.known(key, instance, stored)
        accepted, gap = 0, 0
        duplicate = len(seqs) - len(set(seqs))  # the same seq twice in one batch
        previous = newest if local is not None else None
        for seq in sorted(set(seqs)):
            if seq <= newest:
                duplicate += 1
                continue
            if previous is not None and seq > previous + 1:
                gap += seq - previous - 1
            accepted += 1
            previous = newest = seq
        return Tally(accepted, duplicate, gap, newest)

    def commit(self, key: DeviceKey, instance: str, newest: int) -> None:
        """Remember ``newest`` as taken (after its status was written)."""
        mine = self._taken.get(key)
        if mine is None or mine[0] != instance or mine[1] < newest:
            self._taken[key] = (instance, newest)
