"""What the agent says about itself: the report snapshot, ``Ready``, and ``status.json``.

``Ready`` is summarised here, in one place: ``True`` when the held desired version is
the active one and every workload runs (or none is desired); ``False`` with
``Updating`` while a newer document is not active yet (also after a failed update: the
old workloads keep serving, ``UpdateFailed`` says why) and ``WorkloadUnhealthy`` when a
committed workload is not running; with the fault's reason (``DeviceMissing`` with the
path, ``StartFailed``, ...) when the agent knows why (``Activator.faults``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgefleet_node.agent import facts, store
from edgefleet_node.agent import log as agent_log
from edgefleet_node.protocol import report as proto_report
from edgefleet_node.protocol import wire

if TYPE_CHECKING:
    from edgefleet_node.agent.loop import Agent
    from edgefleet_node.agent.runtime import Instance

__all__ = ["take", "write_status"]

Snapshot = tuple[int | None, tuple[proto_report.WorkloadStatus, ...], proto_report.Facts]


def take(agent: Agent) -> Snapshot:
    running = {i.id for i in agent.runtime.running()}
    workloads = []
    for cur in list(agent.activator.current.values()):
        runs = cur.instance.id in running
        healthy = runs and cur.workload.name not in agent.activator.faults
        metrics = _metrics(agent, cur.instance) if runs else proto_report.WorkloadMetrics()
        workloads.append(
            proto_report.WorkloadStatus(
                cur.workload.name,
                cur.workload.version,
                cur.instance.manifest_digest,
                "Healthy" if healthy else "Unhealthy",
                cur.instance.config_version,
                metrics,
            )
        )
    held = agent.held
    in_sync = held is None or agent.activator.version == held.version
    set_ready = agent.reporter.set_condition
    if held is not None and not held.workloads and in_sync:
        set_ready("Ready", "True", "NothingToRun", "no workloads desired")
    elif not in_sync and held is not None:
        set_ready("Ready", "False", "Updating", f"desired version {held.version} is not active")
    elif faults := list(agent.activator.faults.values()):
        set_ready("Ready", "False", faults[0].reason, "; ".join(f.message for f in faults))
    elif workloads and all(w.health == "Healthy" for w in workloads):
        set_ready("Ready", "True", "WorkloadsHealthy", f"{len(workloads)} workload(s) healthy")
    else:
        set_ready("Ready", "False", "WorkloadUnhealthy", "a workload is not running")
    write_status(agent, workloads)
    return (
        agent.activator.version,
        tuple(workloads),
        facts.gather(agent.state.root, agent.identity.platform),
    )


def _metrics(agent: Agent, instance: Instance) -> proto_report.WorkloadMetrics:
    """The workload's counters; zeros when its ``/metrics`` fails (logged), so one
    workload's broken endpoint never keeps the others, or the report, from the gateway."""
    try:
        return agent.runtime.metrics(instance)
    except Exception as exc:  # any runtime's failure: the report matters more
        agent_log.get().warning(
            "workload metrics unavailable",
            workload=instance.workload,
            container=instance.id,
            error=f"{type(exc).__name__}: {exc}"[:300],
        )
        return proto_report.WorkloadMetrics()


def write_status(agent: Agent, workloads: list[proto_report.WorkloadStatus]) -> None:
    """``status.json``, read by ``edgefleet-node status`` (the agent never reads it back
    except for the last contact and the clock offset)."""
    store.write_json(
        agent.state.status,
        {
            "connection": agent.connection,
            "refused": agent.refused,
            "lastContact": agent.last_contact,
            "clockOffset": agent.clock.offset,
            "heldVersion": agent.held.version if agent.held else None,
            "activeVersion": agent.activator.version,
            "conditions": [c.to_json() for c in agent.reporter.conditions()],
            "workloads": [w.to_json() for w in workloads],
            "acked": agent.reporter.acked,
            "lastReportError": agent.reporter.last_error,
            "certificateNotAfter": wire.format_time(agent.identity.not_after),
        },
    )
