"""The gateway's report ledger: each report sorted into accepted, duplicate or gap."""

from __future__ import annotations

from edgefleet.gateway.report_ledger import ReportLedger, Tally

KEY = ("fleet", "dev-1")
A, B = "a" * 32, "b" * 32


def test_a_first_batch_is_accepted_whatever_the_stored_seq_says() -> None:
    ledger = ReportLedger()
    # reportSeq may lag (counter-only reports are written at most once per interval)
    assert ledger.tally(KEY, A, [7, 8, 9], stored=3) == Tally(3, 0, 0, 9)


def test_resent_reports_are_duplicates_and_the_ack_is_the_newest_taken() -> None:
    ledger = ReportLedger()
    ledger.tally(KEY, A, [1, 2, 3], stored=0)
    ledger.commit(KEY, A, 3)
    assert ledger.tally(KEY, A, [2, 3], stored=0) == Tally(0, 2, 0, 3)
    assert ledger.tally(KEY, A, [3, 4, 5], stored=0) == Tally(2, 1, 0, 5)
    assert ledger.tally(KEY, A, [4, 4], stored=0) == Tally(1, 1, 0, 4)


def test_skipped_seqs_before_and_inside_a_batch_are_gaps() -> None:
    ledger = ReportLedger()
    ledger.commit(KEY, A, 3)
    assert ledger.tally(KEY, A, [6, 7, 10], stored=0) == Tally(3, 0, 4, 10)  # 4, 5, 8, 9


def test_tally_remembers_nothing_until_commit() -> None:
    """A batch whose status write failed is resent: it must count as new again."""
    ledger = ReportLedger()
    ledger.commit(KEY, A, 3)
    assert ledger.tally(KEY, A, [4, 5], stored=0).accepted == 2
    assert ledger.tally(KEY, A, [4, 5], stored=0).accepted == 2
    ledger.commit(KEY, A, 5)
    assert ledger.tally(KEY, A, [4, 5], stored=0).duplicate == 2


def test_seqs_stored_by_another_replica_are_neither_gaps_nor_new() -> None:
    ledger = ReportLedger()
    ledger.commit(KEY, A, 3)
    assert ledger.tally(KEY, A, [8, 9], stored=7) == Tally(2, 0, 0, 9)
    assert ledger.tally(KEY, A, [6, 7], stored=7) == Tally(0, 2, 0, 7)


def test_a_new_agent_installation_starts_again_at_one() -> None:
    ledger = ReportLedger()
    ledger.commit(KEY, A, 500)
    assert ledger.tally(KEY, B, [1, 2], stored=0) == Tally(2, 0, 0, 2)
    ledger.commit(KEY, B, 2)
    assert ledger.known(KEY, B, 0) == 2
    assert ledger.known(("fleet", "dev-2"), A, 0) == 0
