"""What bench/agent.py reads from an agent process, beside memory and CPU from ``/proc``
(:mod:`bench.measure`): its peak RSS sampled while it works, the phase times of an
activation from the agent's JSON log, the machine's load average.

The agent logs one JSON object a line (``edgefleet_node.agent.log``). The events used:
``document accepted`` (notify ends), ``image verified`` (``resolve_s``: index and
manifest fetched and digest-checked; ``verify_s``: the cosign signature manifest and
payload fetched and the ECDSA signature checked), ``image loaded`` (Docker runtime:
``seconds`` to stream the archive to the engine), ``update active`` (``resolve_s``
covers resolve + verify + preflight, ``download_s``, ``start_s`` covers load + start,
``probe_s``, ``bytes``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench import measure

__all__ = [
    "Sampler",
    "events",
    "load_average",
    "phases",
    "sha256_seconds",
]


class Sampler:
    """Peak ``VmRSS`` of a process, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval, self.peak, self.samples = pid, interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, measure.memory_bytes(self.pid, "VmRSS", default=0))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def load_average() -> str:
    """``uptime``'s load averages (1, 5, 15 minutes)."""
    out = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout
    return out.rsplit("load average:", 1)[1].strip()


def events(log: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if doc.get("event") == event:
                out.append(doc)
    return out


def phases(log: Path, written: float, seen: float) -> dict[str, float]:
    """The phases of the activation that followed a desired state written at
    ``written`` (wall clock) and seen in the EdgeDevice's ``current`` at ``seen``."""
    accepted = next(
        e for e in events(log, "document accepted") if e["ts"] >= written and e["workloads"]
    )
    active = next(e for e in events(log, "update active") if e["version"] == accepted["version"])
    verified = [e for e in events(log, "image verified") if accepted["ts"] <= e["ts"]]
    verified = [e for e in verified if e["ts"] <= active["ts"]]
    loaded = [e for e in events(log, "image loaded") if accepted["ts"] <= e["ts"] <= active["ts"]]
    resolve = sum(e["resolve_s"] for e in verified)
    verify = sum(e["verify_s"] for e in verified)
    load = sum(e["seconds"] for e in loaded)
    return {
        "notify": accepted["ts"] - written,
        "resolve": resolve,
        "verify": verify,
        "preflight": max(active["resolve_s"] - resolve - verify, 0.0),
        "download": active["download_s"],
        "load": load,
        "load_bytes": sum(e.get("bytes_sent", 0) for e in loaded),
        "start": max(active["start_s"] - load, 0.0),
        "probe": active["probe_s"],
        "report": seen - active["ts"],
        "bytes": active["bytes"],
    }


def sha256_seconds(size: int, chunk: int = 256 * 1024) -> float:
    """Time to sha256 ``size`` bytes in ``chunk``-sized pieces, as the agent hashes a
    blob while streaming it (measured here, in the benchmark's process)."""
    data = os.urandom(chunk)
    digest = hashlib.sha256()
    started = time.perf_counter()
    for _ in range(size // chunk):
        digest.update(data)
    return time.perf_counter() - started
