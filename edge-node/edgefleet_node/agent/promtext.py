"""Reading a workload's Prometheus ``/metrics`` into the numbers the agent reports.

The inference server in model images (``edgefleet.serving.metrics``) exposes
``edgefleet_serving_requests_total{endpoint, code}`` and the histogram
``edgefleet_serving_inference_duration_seconds``. :func:`workload_metrics` turns the
text exposition format into :class:`~edgefleet_node.protocol.report.WorkloadMetrics`:

- ``requests``: predict requests of any status code;
- ``errors``: predict requests answered 5xx, plus 422 (the model produced an answer
  JSON cannot carry) — client mistakes (other 4xx) are not the workload's errors;
- ``p95_latency_ms``: the 95th percentile of the inference histogram, interpolated
  linearly inside its bucket the way PromQL's ``histogram_quantile`` does; ``None``
  before the first inference.

The parser is small and strict about what it uses, lenient about the rest: unknown
families, comments and timestamps are skipped; a malformed line it needs raises
:class:`MetricsError`. Input is capped at :data:`MAX_BYTES`.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping

from edgefleet_node.protocol.report import WorkloadMetrics

__all__ = ["MAX_BYTES", "MetricsError", "histogram_quantile", "parse_samples", "workload_metrics"]

MAX_BYTES = 1 << 20
REQUESTS = "edgefleet_serving_requests_total"
LATENCY = "edgefleet_serving_inference_duration_seconds"
PREDICT = "/v1/predict"
_SAMPLE = re.compile(
    r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+-?\d+)?"
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


class MetricsError(ValueError):
    """The ``/metrics`` text is not what an edgefleet inference server writes."""


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def _labels(text: str | None, line: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    if not text:
        return labels
    pos = 0
    while pos < len(text):
        match = _LABEL.match(text, pos)
        if match is None or match.end() == pos:
            raise MetricsError(f"malformed labels in metrics line {line[:200]!r}")
        labels[match[1]] = _unescape(match[2])
        pos = match.end()
    return labels


def _value(text: str, line: str) -> float:
    try:
        return float(text)  # accepts +Inf, -Inf, NaN as Prometheus writes them
    except ValueError:
        raise MetricsError(f"malformed value in metrics line {line[:200]!r}") from None


def parse_samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` of every sample line of the exposition text."""
    if len(text) > MAX_BYTES:
        raise MetricsError(f"metrics text is {len(text)} bytes, over {MAX_BYTES}")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.fullmatch(line)
        if match is None:
            raise MetricsError(f"malformed metrics line {line[:200]!r}")
        yield match["name"], _labels(match["labels"], line), _value(match["value"], line)


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of cumulative ``{upper bound: count}`` buckets (PromQL's rule).

    ``None`` without observations. A rank in the ``+Inf`` bucket answers the largest
    finite bound; in the first bucket, interpolation starts at 0.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} is not in [0, 1]")
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        raise MetricsError("a histogram needs a +Inf bucket")
    counts = [buckets[b] for b in bounds]
    if any(later < earlier for earlier, later in itertools.pairwise(counts)):
        raise MetricsError("histogram buckets are not cumulative")
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (
                (rank - previous_count) / (count - previous_count)
            )
        previous_bound, previous_count = bound, count
    return previous_bound  # pragma: no cover - the +Inf bucket always holds the rank


def workload_metrics(text: str) -> WorkloadMetrics:
    """Request count, errors and p95 latency (ms) of one inference server."""
    requests = errors = 0
    buckets: dict[float, float] = {}
    for name, labels, value in parse_samples(text):
        if name == REQUESTS and labels.get("endpoint") == PREDICT:
            try:
                code = int(labels.get("code", ""))
            except ValueError:
                raise MetricsError(f"request counter with code {labels.get('code')!r}") from None
            requests += int(value)
            if code >= 500 or code == 422:
                errors += int(value)
        elif name == f"{LATENCY}_bucket":
            try:
                buckets[float(labels["le"])] = value
            except (KeyError, ValueError):
                raise MetricsError(f"histogram bucket with le={labels.get('le')!r}") from None
    p95 = histogram_quantile(0.95, buckets) if buckets else None
    return WorkloadMetrics(
        requests=requests,
        errors=errors,
        p95_latency_ms=None if p95 is None else round(p95 * 1000, 3),
    )
