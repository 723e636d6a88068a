"""The leader-election decision, as a table (the Lease I/O is tested end to end)."""

from __future__ import annotations

import datetime

import pytest

from edgefleet.domain.leader import Action, LeaseRecord, decide

NOW = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=datetime.UTC)
S = datetime.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (None, Action.CREATE),
        (LeaseRecord("me", NOW - 100 * S, 15), Action.RENEW),  # ours, even if stale
        (LeaseRecord("other", NOW - 5 * S, 15), Action.WAIT),  # alive
        (LeaseRecord("other", NOW - 15 * S, 15), Action.TAKE),  # expired exactly now
        (LeaseRecord("other", NOW - 16 * S, 15), Action.TAKE),
        (LeaseRecord(None, None, 15), Action.TAKE),  # released on a clean shutdown
        (LeaseRecord("", NOW, 15), Action.TAKE),
        (LeaseRecord("other", None, 15), Action.TAKE),
        (LeaseRecord("other", NOW + 60 * S, 15), Action.WAIT),  # a holder's clock ahead
    ],
)
def test_decide(record, expected):
    assert decide(record, "me", NOW) is expected
