"""Reading the inference server's /metrics: the real renderer's text, parsed back."""

from __future__ import annotations

import math

import pytest

from edgefleet.serving.metrics import Metrics
from edgefleet_node.agent import promtext


def _metrics():
    return Metrics(name="m", version="1", sha256="ab")


def test_no_inference_yet_has_no_p95():
    metrics = _metrics()
    metrics.count_request("/healthz", 200)
    got = promtext.workload_metrics(metrics.render())
    assert (got.requests, got.errors, got.p95_latency_ms) == (0, 0, None)


def test_counts_predict_requests_and_server_errors_only():
    metrics = _metrics()
    for code, n in ((200, 7), (400, 2), (422, 1), (500, 3)):
        for _ in range(n):
            metrics.count_request("/v1/predict", code)
    metrics.count_request("/metrics", 200)
    metrics.count_request("/nope", 404)
    got = promtext.workload_metrics(metrics.render())
    assert got.requests == 13
    assert got.errors == 4  # 422 and 5xx; a client's 400 is not the workload's error


def test_p95_is_interpolated_inside_its_bucket():
    metrics = _metrics()
    for _ in range(90):
        metrics.observe_inference(0.0007)  # bucket (0.0005, 0.001]
    for _ in range(10):
        metrics.observe_inference(0.02)  # bucket (0.01, 0.025]
    got = promtext.workload_metrics(metrics.render())
    # rank 95 of 100 lies halfway through the 10 observations of (0.01, 0.025]
    assert got.p95_latency_ms == pytest.approx(17.5, abs=1e-6)


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        ({0.1: 0, math.inf: 0}, None),
        ({0.1: 10, math.inf: 10}, 0.095),
        ({0.1: 0, 1.0: 0, math.inf: 5}, 1.0),  # all above the largest bound
        ({0.1: 4, 0.2: 4, math.inf: 4}, 0.1 * 0.95),
    ],
)
def test_histogram_quantile_table(buckets, expected):
    got = promtext.histogram_quantile(0.95, buckets)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    "text",
    [
        'edgefleet_serving_requests_total{endpoint="/v1/predict",code="2x"} 1',
        'edgefleet_serving_requests_total{endpoint="/v1/predict",code="200" 1',
        'edgefleet_serving_inference_duration_seconds_bucket{le="0.1"} abc',
        "not a metric line at all !",
    ],
)
def test_malformed_lines_are_errors(text):
    with pytest.raises(promtext.MetricsError):
        promtext.workload_metrics(text)


def test_non_cumulative_buckets_are_refused():
    with pytest.raises(promtext.MetricsError, match="cumulative"):
        promtext.histogram_quantile(0.5, {0.1: 5, 0.2: 3, math.inf: 5})


def test_escaped_labels_and_timestamps_parse():
    text = 'x{a="q\\"uote\\\\",b="n\\nl"} 2 1700000000000\n# comment\n'
    assert list(promtext.parse_samples(text)) == [("x", {"a": 'q"uote\\', "b": "n\nl"}, 2.0)]
