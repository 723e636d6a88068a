"""The on-disk report queue: bounded, crash-safe, acknowledged by sequence number.

One file per report (``reports/<seq>.json``, written atomically) and ``meta.json``
(the next sequence number and how many reports were dropped). Sequence numbers only
grow, also across restarts: after a crash between writing a report and ``meta.json``
the next number is recomputed from the files. When the queue is full the oldest report
is dropped and counted; the count travels in every later report as ``droppedReports``.
Snapshots make this safe: the newest report carries the whole state.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from edgefleet_node.agent import store
from edgefleet_node.protocol import report as proto
from edgefleet_node.protocol import wire

__all__ = ["ReportQueue"]

_SUFFIX = ".json"


class ReportQueue:
    def __init__(self, directory: Path, capacity: int = 512) -> None:
        if capacity < 1:
            raise ValueError("the report queue needs room for at least one report")
        self._dir = directory
        self._capacity = capacity
        self._lock = threading.Lock()
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        meta = store.read_json(self._meta) or {}
        seqs = self._seqs()
        self._next = max(int(meta.get("nextSeq", 1)), (seqs[-1] + 1) if seqs else 1)
        self._dropped = int(meta.get("dropped", 0))

    @property
    def _meta(self) -> Path:
        return self._dir / "meta.json"

    def _seqs(self) -> list[int]:
        found = []
        for path in self._dir.glob(f"*{_SUFFIX}"):
            if path.stem.isdigit():
                found.append(int(path.stem))
        return sorted(found)

    def _path(self, seq: int) -> Path:
        return self._dir / f"{seq:020d}{_SUFFIX}"

    @property
    def dropped(self) -> int:
        return self._dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._seqs())

    def next_seq(self) -> int:
        return self._next

    def put(self, build: proto.Report) -> proto.Report:
        """Store ``build`` under the next sequence number (its own ``seq`` is replaced)."""
        with self._lock:
            seqs = self._seqs()
            while len(seqs) >= self._capacity:
                with contextlib.suppress(FileNotFoundError):
                    self._path(seqs.pop(0)).unlink()
                self._dropped += 1
            item = proto.Report(
                seq=self._next,
                time=build.time,
                instance_id=build.instance_id,
                desired_version=build.desired_version,
                facts=build.facts,
                workloads=build.workloads,
                conditions=build.conditions,
                dropped_reports=self._dropped,
            )
            store.atomic_write(self._path(item.seq), wire.canonical(item.to_json()), 0o600)
            self._next += 1
            store.write_json(self._meta, {"nextSeq": self._next, "dropped": self._dropped}, 0o600)
            return item

    def batch(self, limit_bytes: int = wire.MAX_REPORT_BODY) -> proto.ReportBatch | None:
        """The oldest reports that fit one request; unreadable files are dropped."""
        with self._lock:
            reports: list[proto.Report] = []
            size = len(b'{"reports":[]}')
            for seq in self._seqs()[: proto.MAX_BATCH]:
                path = self._path(seq)
                try:
                    data = path.read_bytes()
                    item = proto.Report.from_json(
                        wire.load(data, "queued report", wire.MAX_REPORT_BODY), "queued report"
                    )
                except (OSError, wire.ProtocolError):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    continue
                if reports and size + len(data) + 1 > limit_bytes:
                    break
                size += len(data) + 1
                reports.append(item)
            return proto.ReportBatch(tuple(reports)) if reports else None

    def ack(self, acked: int) -> int:
        """Drop every report with ``seq <= acked``; how many were dropped."""
        with self._lock:
            gone = 0
            for seq in self._seqs():
                if seq > acked:
                    break
                with contextlib.suppress(FileNotFoundError):
                    self._path(seq).unlink()
                gone += 1
            if gone:
                store.fsync_dir(self._dir)
            return gone
