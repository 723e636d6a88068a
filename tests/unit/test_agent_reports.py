"""The on-disk report queue: bounded, ordered, acknowledged, crash-safe numbering."""

from __future__ import annotations

from pathlib import Path

from edgefleet_node.agent import store
from edgefleet_node.agent.reports import ReportQueue
from edgefleet_node.protocol import report, wire

ID = "0" * 32


def _report(**kw: object) -> report.Report:
    return report.Report(seq=1, time="2026-11-24T00:00:00Z", instance_id=ID, **kw)  # type: ignore[arg-type]


def test_sequence_grows_across_restarts_and_acks_drop(tmp_path: Path) -> None:
    q = ReportQueue(tmp_path)
    seqs = [q.put(_report()).seq for _ in range(3)]
    assert seqs == [1, 2, 3]
    batch = q.batch()
    assert batch is not None
    assert [r.seq for r in batch.reports] == [1, 2, 3]
    assert q.ack(2) == 2
    again = ReportQueue(tmp_path)
    assert [r.seq for r in again.batch().reports] == [3]  # type: ignore[union-attr]
    assert again.put(_report()).seq == 4


def test_a_full_queue_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    q = ReportQueue(tmp_path, capacity=3)
    for _ in range(5):
        q.put(_report())
    batch = q.batch()
    assert batch is not None
    assert [r.seq for r in batch.reports] == [3, 4, 5]
    assert [r.dropped_reports for r in batch.reports] == [0, 1, 2]
    assert ReportQueue(tmp_path, capacity=3).dropped == 2


def test_numbering_survives_a_crash_between_report_and_meta(tmp_path: Path) -> None:
    q = ReportQueue(tmp_path)
    q.put(_report())
    q.put(_report())
    store.write_json(tmp_path / "meta.json", {"nextSeq": 1, "dropped": 0})  # stale meta
    assert ReportQueue(tmp_path).put(_report()).seq == 3


def test_batches_fit_the_body_limit_and_skip_damaged_files(tmp_path: Path) -> None:
    q = ReportQueue(tmp_path)
    for _ in range(10):
        q.put(_report())
    (tmp_path / f"{5:020d}.json").write_text("{not json")
    one = len(wire.canonical(_report().to_json()))
    batch = q.batch(limit_bytes=3 * one + 40)
    assert batch is not None
    assert [r.seq for r in batch.reports] == [1, 2, 3]
    assert len(batch.to_bytes()) <= 3 * one + 40
    assert [r.seq for r in q.batch().reports] == [1, 2, 3, 4, 6, 7, 8, 9, 10]  # type: ignore[union-attr]
