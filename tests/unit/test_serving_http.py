"""The inference server's HTTP surface, run for real on 127.0.0.1 with tiny ONNX models and
host onnxruntime: health until loaded, predictions, 400s with a message, body limits,
metrics, JSON request logs, a refused sha256 and integer inputs."""

from __future__ import annotations

import http.client
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from edgefleet.serving import JsonLog, ModelError, ServingConfig, ServingServer
from edgefleet.testing.models import ModelFixture
from tests.unit.serving_helpers import metric, post, request


def _server(model: Path, log: io.StringIO, **overrides: Any) -> ServingServer:
    config = ServingConfig(
        model_path=str(model), model_name="mlp", model_version="v1", port=0, bind="127.0.0.1",
        threads=1, **overrides,
    )  # fmt: skip
    return ServingServer(config, log=JsonLog(log))


@pytest.fixture
def log() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def started(tiny: ModelFixture, log: io.StringIO) -> Iterator[ServingServer]:
    server = _server(tiny.path, log, max_body_bytes=300_000)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ready(started: ServingServer) -> ServingServer:
    started.load_model()
    return started


def test_health_is_503_until_the_model_is_loaded_and_warm(started: ServingServer) -> None:
    code, raw = request(started.port, "GET", "/healthz")
    assert (code, json.loads(raw)) == (503, {"status": "loading"})
    code, body = post(started.port, {"inputs": {}})
    assert code == 503
    assert "not ready" in body["error"]
    _, metrics = request(started.port, "GET", "/metrics")
    assert metric(metrics.decode(), "edgefleet_serving_model_ready") == 0

    started.load_model()

    code, raw = request(started.port, "GET", "/healthz")
    assert code == 200
    assert json.loads(raw)["status"] == "ok"
    _, metrics = request(started.port, "GET", "/metrics")
    assert metric(metrics.decode(), "edgefleet_serving_model_ready") == 1


def test_predict_returns_the_numpy_answer(ready: ServingServer, tiny: ModelFixture) -> None:
    code, body = post(ready.port, tiny.probe_request())
    assert code == 200, body
    assert tiny.matches(body["outputs"])
    assert body["model"] == {"name": "mlp", "version": "v1", "sha256": tiny.sha256}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"inputs": {"input": [[0.0] * 64], "extra": [[1.0]]}}, "unknown inputs ['extra']"),
        ({"inputs": {}}, "missing inputs ['input']"),
        (
            {"inputs": {"input": [[0.0] * 63]}},
            "has shape [1, 63]; the model wants input: float32[1, 64]",
        ),
        ({"inputs": {"input": [0.0] * 64}}, "has shape [64]"),
        ({"inputs": {"input": [["a"] * 64]}}, "must hold finite numbers for float32"),
        ({"inputs": {"input": [[True] * 64]}}, "must hold finite numbers for float32"),
        ({"inputs": {"input": [[None] * 64]}}, "must hold finite numbers"),
        ({"inputs": {"input": [[0.0] * 64, [0.0]]}}, "not a rectangular nested list"),
        ({"inputs": {"input": [[1e39] * 64]}}, "too large for float32"),
        ({"inputs": {"input": 1.0}}, "must be a nested list"),
        ({"inputs": [1.0]}, '"inputs" must be an object'),
        ({"input": {}}, "unknown fields ['input']"),
        ({}, 'no "inputs" object'),
        ([1, 2], "must be a JSON object"),
        (b"{not json", "not valid JSON"),
        (b'{"inputs": {"input": [[NaN]]}}', "NaN is not a number JSON allows"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 100 + b"]" * 100, "must be a JSON object"),
        (b'{"inputs": {"input": ' + b"[" * 100 + b"]" * 100 + b"}}", "maximum number of dimension"),
        (b'{"inputs": {"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "deeper than"),
    ],
)
def test_bad_inputs_get_400_with_a_message(
    ready: ServingServer, payload: Any, message: str
) -> None:
    code, body = post(ready.port, payload)
    assert code == 400
    assert message in body["error"]
    assert request(ready.port, "GET", "/healthz")[0] == 200


def test_body_limits(ready: ServingServer) -> None:
    for headers, status, message in [
        (
            {"Content-Length": "300001"},
            413,
            "body of 300001 bytes is larger than the limit of 300000",
        ),
        ({}, 411, "send the body with a Content-Length header"),
        ({"Content-Length": "-1"}, 400, "is not a byte count"),
    ]:
        # headers only: the server must answer without waiting for (or reading) a body
        conn = http.client.HTTPConnection("127.0.0.1", ready.port, timeout=5)
        try:
            conn.putrequest("POST", "/v1/predict")
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            response = conn.getresponse()
            error = json.loads(response.read())["error"]
            assert response.status == status
            assert message in error
        finally:
            conn.close()
    assert request(ready.port, "GET", "/nope")[0] == 404
    assert request(ready.port, "GET", "/v1/predict")[0] == 405


def test_metrics_count_requests_and_latency(ready: ServingServer, tiny: ModelFixture) -> None:
    for _ in range(3):
        assert post(ready.port, tiny.probe_request())[0] == 200
    assert post(ready.port, {"inputs": {}})[0] == 400
    request(ready.port, "GET", "/healthz")
    code, data = request(ready.port, "GET", "/metrics")
    text = data.decode()
    assert code == 200
    assert metric(text, 'edgefleet_serving_requests_total{endpoint="/v1/predict",code="200"}') == 3
    assert metric(text, 'edgefleet_serving_requests_total{endpoint="/v1/predict",code="400"}') == 1
    assert metric(text, 'edgefleet_serving_requests_total{endpoint="/healthz",code="200"}') == 1
    assert metric(text, "edgefleet_serving_inference_duration_seconds_count") == 3
    assert metric(text, 'edgefleet_serving_inference_duration_seconds_bucket{le="+Inf"}') == 3
    assert 0 < metric(text, "edgefleet_serving_inference_duration_seconds_sum") < 3
    info = f'edgefleet_serving_model_info{{name="mlp",version="v1",sha256="{tiny.sha256}"}}'
    assert metric(text, info) == 1
    assert "# TYPE edgefleet_serving_inference_duration_seconds histogram" in text


def test_requests_are_logged_as_json_lines(ready: ServingServer, log: io.StringIO) -> None:
    request(ready.port, "GET", "/healthz")
    records = [json.loads(line) for line in log.getvalue().splitlines()]
    events = [r["event"] for r in records]
    assert events[:3] == ["listening", "model_loading", "model_ready"]
    last = records[-1]
    assert (last["event"], last["path"], last["status"]) == ("request", "/healthz", 200)


def test_a_model_with_the_wrong_sha256_is_refused(tiny: ModelFixture, log: io.StringIO) -> None:
    server = _server(tiny.path, log, model_sha256="0" * 64)
    server.start()
    try:
        with pytest.raises(ModelError, match="refusing to serve"):
            server.load_model()
        code, body = request(server.port, "GET", "/healthz")
        assert code == 503
        assert json.loads(body)["status"] == "failed"
    finally:
        server.stop()


def _int_model(path: Path) -> Path:
    """``y = x`` for an int32 input with a dynamic first dimension."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "ints",
        [helper.make_tensor_value_info("x", TensorProto.INT32, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["batch", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_integer_inputs_with_a_dynamic_dimension(tmp_path: Path, log: io.StringIO) -> None:
    server = _server(_int_model(tmp_path / "ints.onnx"), log)
    server.start()
    try:
        server.load_model()
        assert post(server.port, {"inputs": {"x": [[1, 2], [3, 4], [5, 6]]}}) == (
            200,
            {"outputs": {"y": [[1, 2], [3, 4], [5, 6]]}, "model": server.info.as_json()},
        )
        code, body = post(server.port, {"inputs": {"x": [[1.5, 2]]}})
        assert (code, "integers that fit int32" in body["error"]) == (400, True)
        code, body = post(server.port, {"inputs": {"x": [[2**40, 2]]}})
        assert (code, "outside the range of int32" in body["error"]) == (400, True)
        code, body = post(server.port, {"inputs": {"x": [[1, 2, 3]]}})
        assert (code, "int32[?, 2]" in body["error"]) == (400, True)
    finally:
        server.stop()
