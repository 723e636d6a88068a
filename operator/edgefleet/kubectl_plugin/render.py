"""Pure text rendering for ``kubectl edgefleet``: rollout progress per wave, device rows.

Takes the objects as the API server returns them (plain dicts) and returns lines, so
the live display and the tests share one implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["bar", "device_rows", "rollout_lines", "summary_line", "table"]


def bar(done: int, total: int, width: int = 20) -> str:
    """``[#####.....]`` with ``done`` of ``total`` filled."""
    if total <= 0:
        return "[" + "." * width + "]"
    filled = min(width, round(width * done / total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _cond(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def rollout_lines(obj: Mapping[str, Any]) -> list[str]:
    """The progress display of one Rollout: header, one line per wave, the reason it waits."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    model = spec.get("model") or {}
    counts = status.get("counts") or {}
    phase = status.get("phase") or "Pending"
    lines = [
        f"Rollout {meta.get('namespace')}/{meta.get('name')}: {model.get('name')}"
        f" {status.get('stableVersion') or '?'} -> {model.get('version')}   phase {phase},"
        f" step {status.get('currentStep', 0)}",
        f"  selected {counts.get('selected', 0)}  updated {counts.get('updated', 0)}"
        f"  healthy {counts.get('healthy', 0)}  failed {counts.get('failed', 0)}"
        f"  pending {counts.get('pending', 0)}  offline {counts.get('offline', 0)}"
        f"  lost {counts.get('lost', 0)}  skipped {counts.get('skipped', 0)}",
    ]
    current = status.get("currentStep", 0)
    waves = status.get("waves") or []
    # The wave the rollout is in, or the last one it finished (when it pauses after it).
    active = max((w.get("step", 0) for w in waves if w.get("step", 0) <= current), default=0)
    for wave in waves:
        marker = ">" if wave.get("step") == active else " "
        size = wave.get("devices", 0)
        lines.append(
            f" {marker} step {wave.get('step'):>2} {wave.get('weight'):>3}%"
            f" {bar(wave.get('healthy', 0), size)} {wave.get('healthy', 0):>5}/{size:<5} healthy"
            f"  {wave.get('updated', 0)} updated  {wave.get('failed', 0)} failed"
            f"  {wave.get('offline', 0)} offline"
        )
    ready = _cond(obj, "Ready")
    reason = ready.get("reason") or "-"
    lines.append(
        f"  Ready={ready.get('status', 'Unknown')} ({reason}): {status.get('message', '')}"
    )
    for note in (status.get("failedDevices") or [])[:5]:
        lines.append(f"  failed: {note.get('name')} {note.get('reason')} {note.get('message', '')}")
    lost = status.get("lostDevices") or []
    if lost:
        lines.append(f"  lost: {lost[0].get('name')} {lost[0].get('message', '')}"
                     + (f" (+{len(lost) - 1} more)" if len(lost) > 1 else ""))  # fmt: skip
    return lines


def summary_line(obj: Mapping[str, Any]) -> str:
    """One line for logs and pipes: step, phase, counts and the reason it waits."""
    status = obj.get("status") or {}
    counts = status.get("counts") or {}
    return (
        f"step {status.get('currentStep', 0)} {status.get('phase') or 'Pending'}:"
        f" {counts.get('updated', 0)}/{counts.get('selected', 0)} updated,"
        f" {counts.get('healthy', 0)} healthy, {counts.get('failed', 0)} failed,"
        f" {counts.get('offline', 0)} offline - {status.get('message', '')}"
    )


def device_rows(items: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Rows of ``device list``: name, platform, online, ready, desired, current, last seen."""
    rows = [["NAME", "PLATFORM", "ONLINE", "READY", "DESIRED", "CURRENT", "LAST SEEN"]]
    for obj in items:
        status = obj.get("status") or {}
        rows.append(
            [
                str((obj.get("metadata") or {}).get("name")),
                str((obj.get("spec") or {}).get("platform")),
                str(_cond(obj, "Online").get("status", "Unknown")),
                str(_cond(obj, "Ready").get("status", "Unknown")),
                str(status.get("desiredVersion") or "-"),
                str(status.get("currentVersion") or "-"),
                str(status.get("lastSeen") or "-"),
            ]
        )
    return rows


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows aligned in columns, like ``kubectl get``."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
