"""Conditions keep transition times stable and summarise Ready the kstatus way."""

from __future__ import annotations

from edgefleet.api.conditions import Reason, Type
from edgefleet.domain.conditions import find, set_condition, summarise_ready

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def test_transition_time_changes_only_with_status():
    conds = set_condition([], Type.BUILT, "False", Reason.BUILDING, now=T0)
    conds = set_condition(conds, Type.BUILT, "False", Reason.BUILD_FAILED, "boom", now=T1)
    built = find(conds, Type.BUILT)
    assert built is not None
    assert (built.last_transition_time, built.reason, built.message) == (T0, "BuildFailed", "boom")
    conds = set_condition(conds, Type.BUILT, "True", Reason.BUILD_SUCCEEDED, now=T1)
    assert find(conds, Type.BUILT).last_transition_time == T1
    assert len(conds) == 1


def test_ready_true_only_when_required_true_and_not_reconciling():
    conds = set_condition([], Type.BUILT, "True", Reason.BUILD_SUCCEEDED, now=T0)
    conds = summarise_ready(conds, [Type.BUILT, Type.SIGNED], generation=3, now=T0)
    ready = find(conds, Type.READY)
    assert (ready.status, ready.message, ready.observed_generation) == (
        "Unknown",
        "waiting for Signed",
        3,
    )
    conds = set_condition(conds, Type.SIGNED, "True", Reason.SIGNED, now=T0)
    conds = set_condition(conds, Type.RECONCILING, "True", Reason.BUILDING, "building", now=T0)
    assert find(summarise_ready(conds, [Type.BUILT, Type.SIGNED]), Type.READY).status == "Unknown"
    conds = set_condition(conds, Type.RECONCILING, "False", Reason.RECONCILED, now=T0)
    assert find(summarise_ready(conds, [Type.BUILT, Type.SIGNED]), Type.READY).status == "True"


def test_stalled_wins_and_carries_its_reason():
    conds = set_condition(
        [], Type.BUILT, "False", Reason.SOURCE_DIGEST_MISMATCH, "sha mismatch", now=T0
    )
    conds = set_condition(
        conds, Type.STALLED, "True", Reason.SOURCE_DIGEST_MISMATCH, "fix the sha", now=T0
    )
    ready = find(summarise_ready(conds, [Type.BUILT]), Type.READY)
    assert (ready.status, ready.reason, ready.message) == (
        "False",
        "SourceDigestMismatch",
        "fix the sha",
    )
