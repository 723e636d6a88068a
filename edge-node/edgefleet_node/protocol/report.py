"""Reports: what a device tells the gateway about itself and its workloads.

A report is a snapshot, not a delta: the device's conditions, its workloads (digest,
health, configuration version, cumulative metrics) and its facts. Snapshots make
delivery idempotent: the agent numbers reports (``seq``, persisted, increasing), queues
them on disk while offline and replays them in batches; the gateway applies the newest
of a batch, ignores any not newer than what it applied, and acknowledges the highest
sequence number so the agent can drop what arrived. Nothing is lost (the newest state
always arrives) and nothing is counted twice (metrics are cumulative counters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from edgefleet_node.protocol import wire
from edgefleet_node.protocol.wire import ProtocolError

__all__ = [
    "MAX_BATCH",
    "Ack",
    "AgentCondition",
    "Facts",
    "Report",
    "ReportBatch",
    "WorkloadMetrics",
    "WorkloadStatus",
]

MAX_BATCH = 64
Health = Literal["Unknown", "Starting", "Healthy", "Unhealthy"]
_HEALTH = ("Unknown", "Starting", "Healthy", "Unhealthy")
_REASON = r"[A-Z][A-Za-z0-9]{0,63}"
_DIGEST = r"sha256:[0-9a-f]{64}"


@dataclass(frozen=True)
class Facts:
    architecture: str | None = None
    os: str | None = None
    memory_bytes: int | None = None
    disk_free_bytes: int | None = None
    agent_version: str | None = None
    platform: str | None = None

    def to_json(self) -> dict[str, Any]:
        pairs = {
            "architecture": self.architecture,
            "os": self.os,
            "memoryBytes": self.memory_bytes,
            "diskFreeBytes": self.disk_free_bytes,
            "agentVersion": self.agent_version,
            "platform": self.platform,
        }
        return {k: v for k, v in pairs.items() if v is not None}

    @classmethod
    def from_json(cls, doc: Any, what: str) -> Facts:
        if not isinstance(doc, dict):
            raise ProtocolError(f"{what} must be an object")
        wire.only(doc, what, {"architecture", "os", "memoryBytes", "diskFreeBytes",
                              "agentVersion", "platform"})  # fmt: skip
        return cls(
            wire.opt_str(doc, "architecture", what, max_len=32),
            wire.opt_str(doc, "os", what, max_len=128),
            wire.opt_int(doc, "memoryBytes", what),
            wire.opt_int(doc, "diskFreeBytes", what),
            wire.opt_str(doc, "agentVersion", what, max_len=64),
            wire.opt_str(doc, "platform", what, max_len=32),
        )


@dataclass(frozen=True)
class WorkloadMetrics:
    requests: int = 0  # cumulative since the workload started
    errors: int = 0
    p95_latency_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"requests": self.requests, "errors": self.errors}
        if self.p95_latency_ms is not None:
            doc["p95LatencyMs"] = self.p95_latency_ms
        return doc

    @classmethod
    def from_json(cls, doc: Any, what: str) -> WorkloadMetrics:
        if not isinstance(doc, dict):
            raise ProtocolError(f"{what} must be an object")
        wire.only(doc, what, {"requests", "errors", "p95LatencyMs"})
        return cls(
            wire.opt_int(doc, "requests", what) or 0,
            wire.opt_int(doc, "errors", what) or 0,
            wire.opt_float(doc, "p95LatencyMs", what, hi=3.6e6),
        )


@dataclass(frozen=True)
class WorkloadStatus:
    name: str
    version: str
    manifest_digest: str
    health: Health
    config_version: str | None = None
    metrics: WorkloadMetrics = field(default_factory=WorkloadMetrics)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "manifestDigest": self.manifest_digest,
            "health": self.health,
            "metrics": self.metrics.to_json(),
        }
        if self.config_version is not None:
            doc["configVersion"] = self.config_version
        return doc

    @classmethod
    def from_json(cls, doc: Any, what: str) -> WorkloadStatus:
        if not isinstance(doc, dict):
            raise ProtocolError(f"{what} must be an object")
        wire.only(doc, what, {"name", "version", "manifestDigest", "health", "configVersion",
                              "metrics"})  # fmt: skip
        health = doc.get("health")
        if health not in _HEALTH:
            raise ProtocolError(f"{what}: 'health' must be one of {_HEALTH}")
        return cls(
            wire.check_name(wire.req_str(doc, "name", what, max_len=63), f"{what} name"),
            wire.req_str(doc, "version", what, max_len=64),
            wire.req_str(doc, "manifestDigest", what, max_len=71, pattern=_DIGEST),
            health,
            wire.opt_str(doc, "configVersion", what, max_len=128),
            WorkloadMetrics.from_json(doc.get("metrics") or {}, f"{what} metrics"),
        )


@dataclass(frozen=True)
class AgentCondition:
    """A condition the agent asserts, e.g. ``UpdateFailed`` with reason ``ProbeFailed``."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {"type": self.type, "status": self.status, "reason": self.reason,
               "message": self.message}  # fmt: skip
        if self.last_transition_time is not None:
            doc["lastTransitionTime"] = self.last_transition_time
        return doc

    @classmethod
    def from_json(cls, doc: Any, what: str) -> AgentCondition:
        if not isinstance(doc, dict):
            raise ProtocolError(f"{what} must be an object")
        wire.only(doc, what, {"type", "status", "reason", "message", "lastTransitionTime"})
        status = doc.get("status")
        if status not in ("True", "False", "Unknown"):
            raise ProtocolError(f"{what}: 'status' must be True, False or Unknown")
        when = wire.opt_str(doc, "lastTransitionTime", what, max_len=64)
        if when is not None:
            wire.parse_time(when, what)
        return cls(
            wire.req_str(doc, "type", what, max_len=64, pattern=_REASON),
            status,
            wire.req_str(doc, "reason", what, max_len=64, pattern=_REASON),
            (doc.get("message") or "")[:1024] if isinstance(doc.get("message"), str | None) else "",
            when,
        )


@dataclass(frozen=True)
class Report:
    seq: int
    time: str  # RFC 3339, the device's clock
    instance_id: str
    desired_version: int | None = None  # the desired-state version the workloads realise
    facts: Facts = field(default_factory=Facts)
    workloads: tuple[WorkloadStatus, ...] = ()
    conditions: tuple[AgentCondition, ...] = ()
    dropped_reports: int = 0  # reports dropped from a full offline queue

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "seq": self.seq,
            "time": self.time,
            "instanceId": self.instance_id,
            "facts": self.facts.to_json(),
            "workloads": [w.to_json() for w in self.workloads],
            "conditions": [c.to_json() for c in self.conditions],
            "droppedReports": self.dropped_reports,
        }
        if self.desired_version is not None:
            doc["desiredVersion"] = self.desired_version
        return doc

    @classmethod
    def from_json(cls, doc: Any, what: str) -> Report:
        if not isinstance(doc, dict):
            raise ProtocolError(f"{what} must be an object")
        wire.only(doc, what, {"seq", "time", "instanceId", "desiredVersion", "facts",
                              "workloads", "conditions", "droppedReports"})  # fmt: skip
        time = wire.req_str(doc, "time", what, max_len=64)
        wire.parse_time(time, what)
        workloads = wire.req_list(doc, "workloads", what, max_len=16)
        conditions = wire.req_list(doc, "conditions", what, max_len=16)
        return cls(
            seq=wire.req_int(doc, "seq", what, lo=1),
            time=time,
            instance_id=wire.req_str(doc, "instanceId", what, max_len=32, pattern=r"[0-9a-f]{32}"),
            desired_version=wire.opt_int(doc, "desiredVersion", what),
            facts=Facts.from_json(doc.get("facts") or {}, f"{what} facts"),
            workloads=tuple(WorkloadStatus.from_json(w, f"{what} workload") for w in workloads),
            conditions=tuple(AgentCondition.from_json(c, f"{what} condition") for c in conditions),
            dropped_reports=wire.opt_int(doc, "droppedReports", what) or 0,
        )


@dataclass(frozen=True)
class ReportBatch:
    reports: tuple[Report, ...]

    def to_bytes(self) -> bytes:
        return wire.canonical({"reports": [r.to_json() for r in self.reports]})

    @classmethod
    def from_bytes(cls, data: bytes) -> ReportBatch:
        what = "report batch"
        doc = wire.load(data, what, wire.MAX_REPORT_BODY)
        wire.only(doc, what, {"reports"})
        items = wire.req_list(doc, "reports", what, max_len=MAX_BATCH)
        if not items:
            raise ProtocolError(f"{what}: no reports")
        return cls(tuple(Report.from_json(r, f"report {i}") for i, r in enumerate(items)))

    def newest(self) -> Report:
        return max(self.reports, key=lambda r: r.seq)


@dataclass(frozen=True)
class Ack:
    acked: int  # every report with seq <= acked arrived (or was superseded)

    def to_bytes(self) -> bytes:
        return wire.canonical({"acked": self.acked})

    @classmethod
    def from_bytes(cls, data: bytes) -> Ack:
        doc = wire.load(data, "report ack", 4096)
        wire.only(doc, "report ack", {"acked"})
        return cls(wire.req_int(doc, "acked", "report ack"))
