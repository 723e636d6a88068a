"""Prometheus metrics of the inference server, rendered in the text exposition format.

Three families are always present:

- ``edgefleet_serving_requests_total{endpoint, code}`` — counter of HTTP requests;
  unknown paths count under ``endpoint="other"`` so a scanner cannot blow up the
  label set;
- ``edgefleet_serving_inference_duration_seconds`` — histogram of the time spent
  in ``InferenceSession.run`` for predict requests (warm-up excluded);
- ``edgefleet_serving_model_info{name, version, sha256}`` — gauge, always 1;

plus ``edgefleet_serving_model_ready`` (0/1) and
``edgefleet_serving_model_load_seconds`` (load + warm-up time, once loaded).
"""

from __future__ import annotations

import bisect
import threading

__all__ = ["ENDPOINTS", "LATENCY_BUCKETS", "Metrics"]

ENDPOINTS = frozenset({"/healthz", "/v1/predict", "/metrics"})
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_PREFIX = "edgefleet_serving"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class Metrics:
    """Thread-safe counters for one server; :meth:`render` gives the exposition text."""

    def __init__(self, *, name: str, version: str, sha256: str) -> None:
        self._lock = threading.Lock()
        self._info = (name, version, sha256)
        self._requests: dict[tuple[str, int], int] = {}
        self._bucket_counts = [0] * len(LATENCY_BUCKETS)
        self._latency_sum = 0.0
        self._latency_count = 0
        self._ready = False
        self._load_seconds: float | None = None

    def set_info(self, *, name: str, version: str, sha256: str) -> None:
        """Relabel ``model_info`` (the server learns the sha256 when it loads the file)."""
        with self._lock:
            self._info = (name, version, sha256)

    def count_request(self, path: str, code: int) -> None:
        """Count one finished request for ``path`` with status ``code``."""
        endpoint = path if path in ENDPOINTS else "other"
        with self._lock:
            key = (endpoint, code)
            self._requests[key] = self._requests.get(key, 0) + 1

    def observe_inference(self, seconds: float) -> None:
        """Record the duration of one inference."""
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            if index < len(self._bucket_counts):
                self._bucket_counts[index] += 1
            self._latency_sum += seconds
            self._latency_count += 1

    def set_loaded(self, load_seconds: float) -> None:
        """Mark the model ready, loaded in ``load_seconds``."""
        with self._lock:
            self._ready = True
            self._load_seconds = load_seconds

    def request_count(self, path: str, code: int) -> int:
        """How many requests to ``path`` ended with ``code`` (for tests and logs)."""
        with self._lock:
            return self._requests.get((path, code), 0)

    def render(self) -> str:
        """The metrics in Prometheus text format 0.0.4."""
        with self._lock:
            requests = sorted(self._requests.items())
            buckets = list(self._bucket_counts)
            total, count = self._latency_sum, self._latency_count
            ready, load_seconds = self._ready, self._load_seconds
            name, version, sha = self._info
        lines = [
            f"# HELP {_PREFIX}_requests_total HTTP requests by endpoint and status code.",
            f"# TYPE {_PREFIX}_requests_total counter",
        ]
        lines += [
            f'{_PREFIX}_requests_total{{endpoint="{_label(ep)}",code="{code}"}} {n}'
            for (ep, code), n in requests
        ]
        hist = f"{_PREFIX}_inference_duration_seconds"
        lines += [
            f"# HELP {hist} Time spent running the model for predict requests.",
            f"# TYPE {hist} histogram",
        ]
        cumulative = 0
        for bound, n in zip(LATENCY_BUCKETS, buckets, strict=True):
            cumulative += n
            lines.append(f'{hist}_bucket{{le="{_num(bound)}"}} {cumulative}')
        lines += [
            f'{hist}_bucket{{le="+Inf"}} {count}',
            f"{hist}_sum {total!r}",
            f"{hist}_count {count}",
            f"# HELP {_PREFIX}_model_info The model this server serves.",
            f"# TYPE {_PREFIX}_model_info gauge",
            f'{_PREFIX}_model_info{{name="{_label(name)}",version="{_label(version)}",'
            f'sha256="{_label(sha)}"}} 1',
            f"# HELP {_PREFIX}_model_ready 1 once the model is loaded and warmed up.",
            f"# TYPE {_PREFIX}_model_ready gauge",
            f"{_PREFIX}_model_ready {int(ready)}",
        ]
        if load_seconds is not None:
            lines += [
                f"# HELP {_PREFIX}_model_load_seconds Time to load and warm up the model.",
                f"# TYPE {_PREFIX}_model_load_seconds gauge",
                f"{_PREFIX}_model_load_seconds {load_seconds!r}",
            ]
        return "\n".join(lines) + "\n"
