"""The table of bench/rollout.py, and its section of docs/benchmarks.md (``--out``):
the command line and the table are replaced, the prose after the table is kept.
"""

from __future__ import annotations

from pathlib import Path

from bench.rollout_fleet import BASELINE_WRITERS, SHARD_WORKERS, SHARDS

__all__ = ["SECTION", "table", "write_section"]

SECTION = "## Rollout convergence"


def table(rows: list[dict[str, float]]) -> str:
    head = (
        "| devices | reaction | apply→notified p50 / p99 | notified→Ready p50 / p99 | total"
        " | controller writes/device (metrics; desiredRevision) | operator CPU | operator"
        " peak RSS | baseline: N applies answered / + every report in | load avg start →"
        " end |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['devices']:,.0f} | {r['reaction_s']:.2f} s | {r['notify_p50_s']:.1f} /"
        f" {r['notify_p99_s']:.1f} s | {r['ready_p50_s']:.2f} / {r['ready_p99_s']:.2f} s |"
        f" {r['total_s']:.1f} s | {r['writes_per_device']:.2f}; {r['revisions_per_device']:.2f}"
        f" | {r['operator_cpu_s']:.1f} s | {r['operator_rss_mb']:.0f} MB |"
        f" {r['baseline_writes_s']:.1f} / {r['baseline_total_s']:.1f} s |"
        f" {r['load_start']:.2f} → {r['load_end']:.2f} |\n"
        for r in rows
    )
    return head + body


def write_section(path: Path, text: str, devices: str) -> None:
    """Replace the section's command line and table; keep the prose after the table."""
    intro = (
        f"{SECTION}\n\n`.venv/bin/python bench/rollout.py --devices {devices} --out"
        " docs/benchmarks.md` starts its own API server and registry, the operator with only"
        " the rollout controller, and N fake-fleet devices in"
        f" {SHARDS} processes of their own (they stand in for gateway + agents and report"
        f" Healthy as soon as they see their desired workload; {SHARD_WORKERS} report"
        " writers each). One Rollout, no pauses, `maxUnavailable: 100%`,"
        " `minHealthyDuration: 1s`. Controller writes are PATCHes of `edgedevices/status`"
        " from `apiserver_request_total` minus the fleet's own reports. The baseline, in"
        f" the same run with the operator stopped: {BASELINE_WRITERS} concurrent plain"
        " server-side applies of a new `status.desired` to the same devices by a minimal"
        " client, with the same fleet reporting on each.\n\n"
    )
    doc = path.read_text()
    start = doc.find(SECTION)
    if start == -1:
        doc = doc.rstrip("\n") + "\n\n" + intro + text
    else:
        end = doc.find("\n## ", start + len(SECTION))
        section = doc[start:end] if end != -1 else doc[start:]
        rest = section.split("|\n\n", 1)[1] if "|\n\n" in section else ""
        tail = ("\n" + rest) if rest else ""
        doc = doc[:start] + intro + text + tail + (doc[end:] if end != -1 else "")
    path.write_text(doc)
