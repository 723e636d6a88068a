"""Measurement helpers the benchmark scripts share.

- a running process, from ``/proc``: CPU seconds (utime + stime) and the sizes and
  counts of ``/proc/PID/status`` (VmRSS, VmHWM, Threads);
- percentiles, in the three conventions the published tables were made with (each
  script keeps its own, so its numbers stay comparable with the ones in
  docs/benchmarks.md);
- the API server's own request counters (``apiserver_request_total``).
"""

from __future__ import annotations

import os
import re
import ssl
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from edgefleet.testing.controlplane import ControlPlane

__all__ = [
    "WRITE_VERBS",
    "apiserver_metrics",
    "cpu_seconds",
    "memory_bytes",
    "percentile_exclusive",
    "percentile_nearest",
    "percentile_rank",
    "request_total",
    "status_value",
]

#: The verbs of ``apiserver_request_total`` that write.
WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


# -- a running process ------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """CPU seconds (utime + stime) a running process has used, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_value(pid: int, field: str, default: int | None = None) -> int:
    """The number in the ``field:`` line of ``/proc/PID/status`` (kB for sizes).

    A process that has exited but is not reaped yet has no memory lines: ``default``
    then, or :class:`LookupError` when there is none."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    if default is None:
        raise LookupError(f"/proc/{pid}/status has no {field}")
    return default


def memory_bytes(pid: int, field: str = "VmRSS", default: int | None = None) -> int:
    """A size from ``/proc/PID/status`` in bytes: RSS, or ``VmHWM`` for its peak;
    ``default`` (or :class:`LookupError`) as :func:`status_value`."""
    try:
        return status_value(pid, field) * 1024
    except LookupError:
        if default is None:
            raise
        return default


# -- percentiles ------------------------------------------------------------------------
def percentile_rank(values: Iterable[float], q: float) -> float:
    """The sorted value at index ``int(q * n)`` (clamped to the last); ``q`` a fraction
    (0.99). NaN when there are no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def percentile_nearest(values: Iterable[float], q: float) -> float:
    """The sorted value at index ``round(q * (n - 1))``; ``q`` a fraction (0.95)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def percentile_exclusive(values: list[float], percent: float) -> float:
    """``statistics.quantiles(values, n=100)`` (exclusive method) at ``percent`` (50, 99);
    a single value is its own percentile."""
    if len(values) > 1:
        return statistics.quantiles(values, n=100)[int(percent) - 1]
    return values[0]


# -- the API server's request counters --------------------------------------------------
def apiserver_metrics(cp: ControlPlane) -> str:
    """The API server's ``/metrics`` text, read with the control plane's admin certificate."""
    ctx = ssl.create_default_context(cafile=str(cp.dir / "ca.crt"))
    ctx.load_cert_chain(str(cp.dir / "admin.crt"), str(cp.dir / "admin.key"))
    return httpx.get(f"{cp.url}/metrics", verify=ctx, timeout=30).text


def request_total(
    metrics: str, resource: str, verbs: Iterable[str], subresource: str | None = None
) -> float:
    """The sum of ``apiserver_request_total`` over the series of ``resource`` with one of
    ``verbs`` (and, when given, that ``subresource``; otherwise any)."""
    wanted = set(verbs)
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(_LABEL.findall(line))
        if labels.get("verb") not in wanted or labels.get("resource") != resource:
            continue
        if subresource is None or labels.get("subresource") == subresource:
            total += float(line.rsplit(" ", 1)[1])
    return total
