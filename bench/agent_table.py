"""The markdown table bench/agent.py prints: one column per runtime, the goal or the
peer figure beside each measure (the peers' are published figures, not measured here)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["render"]

RUNTIMES = ("simulated", "docker")
PEERS = "EdgeCore needs ≥ 70 MB, Greengrass nucleus 96 MB (published, not measured here)"


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _s(n: float) -> str:
    return f"{n:.3f} s" if n < 1 else f"{n:.2f} s"


def _idle_cpu(n: dict[str, Any]) -> str:
    share = n["idle_cpu_s"] / n["idle_s"]
    return f"{share * 100:.3f} % of a core ({n['idle_cpu_s'] * 1000:.0f} ms in {n['idle_s']:.0f} s)"


def _phase_rows(label: str, key: str, nodes: dict[str, Any], sha_rate: float) -> list[list[str]]:
    def col(fn: Any) -> list[str]:
        return [fn(nodes[r][key]) if r in nodes else "—" for r in RUNTIMES]

    def dl(p: dict[str, Any]) -> str:
        rate = p["bytes"] / max(p["download"], 1e-9) / 1e6
        return f"{_s(p['download'])} ({rate:.0f} MB/s)"

    def hashing(p: dict[str, Any]) -> str:
        return f"≈ {_s(p['bytes'] / sha_rate)}"

    return [
        [f"{label}: written → EdgeDevice `current`", *col(lambda p: _s(p["total"])), ""],
        ["· notify (write → document accepted)", *col(lambda p: _s(p["notify"])), ""],
        [
            "· resolve (index + manifest fetched, digest-checked)",
            *col(lambda p: _s(p["resolve"])),
            "",
        ],
        [
            "· verify (cosign signature fetched + ECDSA check)",
            *col(lambda p: _s(p["verify"])),
            "log event `image verified`",
        ],
        ["· preflight (disk, memory)", *col(lambda p: _s(p["preflight"])), ""],
        [
            "· download (sha256 while streaming, fsync)",
            *col(dl),
            f"{_mb(next(iter(nodes.values()))[key]['bytes'])} received",
        ],
        [
            "  of which sha256 (measured apart, same bytes)",
            *col(hashing),
            f"hashlib in 256 KiB pieces: {sha_rate / 1e6:.0f} MB/s here",
        ],
        [
            "· load (archive streamed to the engine, re-hashed; engine unpacks)",
            *col(
                lambda p: _s(p["load"]) + (f" ({_mb(p['load_bytes'])} sent)" if p["load"] else "")
            ),
            "Docker only; `image loaded`; layers the engine holds are not sent again",
        ],
        ["· start (container create + start)", *col(lambda p: _s(p["start"])), ""],
        ["· probe (`/healthz`, then an inference)", *col(lambda p: _s(p["probe"])), ""],
        ["· report (update active → `current`)", *col(lambda p: _s(p["report"])), ""],
        [
            "agent CPU time during this activation",
            *col(lambda p: _s(p["cpu"])),
            "the agent process only (the engine's unpacking is not in it)",
        ],
    ]


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    nodes: dict[str, Any] = result["nodes"]
    v1, v2 = result["images"]
    sha_rate = result["sha256_rate"]

    def col(fn: Any) -> list[str]:
        return [fn(nodes[r]) if r in nodes else "—" for r in RUNTIMES]

    rows: list[list[str]] = [
        [
            "agent RSS, enrolled, before any workload",
            *col(lambda n: _mb(n["start_rss"])),
            f"goal ≤ 40 MB; {PEERS}",
        ],
        [
            f"agent peak VmRSS during the first pull ({_mb(v1.image_size)} image)",
            *col(lambda n: f"{_mb(n['v1']['peak_rss'])} ({n['v1']['samples']} samples)"),
            "goal ≤ 60 MB; sampled every 20 ms from /proc; Docker: includes the load",
        ],
        [
            "agent VmHWM after the first pull",
            *col(lambda n: _mb(n["v1"]["hwm"])),
            "the process's own high-water mark since it started",
        ],
        [
            f"agent RSS idle (max over {args.idle} s, both agents at once)",
            *col(lambda n: _mb(n["idle_rss"])),
            f"goal ≤ 40 MB; {PEERS}",
        ],
        [
            f"agent idle CPU ({args.idle} s: long-poll, reports, heal)",
            *col(_idle_cpu),
            "user + system time from /proc (10 ms ticks)",
        ],
        *_phase_rows("first pull", "v1", nodes, sha_rate),
        *_phase_rows("weights-only update", "v2", nodes, sha_rate),
        [
            "weights-only update: bytes received ÷ compressed model layer",
            *col(lambda n: f"{n['v2']['bytes'] / v2.model_layer_size:.4f}"),
            f"goal ≤ 1.05; model layer {_mb(v2.model_layer_size)}; documents included; "
            f"a full re-pull would be {v2.image_size / v2.model_layer_size:.2f}",
        ],
        [
            "agent peak VmRSS during the update; VmHWM at the end",
            *col(lambda n: f"{_mb(n['v2']['peak_rss'])}; {_mb(n['hwm_end'])}"),
            "goal ≤ 60 MB",
        ],
    ]
    lines = [
        f"load average at start: {result['load_start']}",
        "",
        "| measure | simulated runtime | Docker runtime | goal / peers / notes |",
        "| --- | --- | --- | --- |",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        f"load average at end: {result['load_end']}",
        f"images: built by the operator's builder in {v1.build_seconds:.0f} s / "
        f"{v2.build_seconds:.0f} s before the agents started (its cache may hold "
        "them from an earlier run)",
        f"Made by `flock /tmp/edgefleet-heavy.lock .venv/bin/python -m bench.agent "
        f"--runtime {args.runtime} --model-mb {args.model_mb} --idle {args.idle}`.",
    ]
    return "\n".join(lines)
