"""The inference server, run for real on 127.0.0.1 with tiny ONNX models and host onnxruntime."""

from __future__ import annotations

import ast
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from edgefleet.serving import ConfigError, JsonLog, ModelError, ServingConfig, ServingServer
from edgefleet.testing.models import ModelFixture, make_mlp
from edgefleet.testing.procs import Service, free_port, wait_until

SERVING_DIR = Path(__file__).resolve().parents[2] / "operator" / "edgefleet" / "serving"


def _request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _post(port: int, payload: Any) -> tuple[int, dict[str, Any]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    code, data = _request(port, "POST", "/v1/predict", body, {"Content-Type": "application/json"})
    return code, json.loads(data)


def _metric(text: str, prefix: str) -> float:
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(prefix + " ")]
    assert len(values) == 1, f"{prefix} appears {len(values)} times in:\n{text}"
    return float(values[0])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ModelFixture:
    return make_mlp(tmp_path_factory.mktemp("model") / "mlp.onnx", target_bytes=50_000, seed=7)


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
    code, raw = _request(started.port, "GET", "/healthz")
    assert (code, json.loads(raw)) == (503, {"status": "loading"})
    code, body = _post(started.port, {"inputs": {}})
    assert code == 503
    assert "not ready" in body["error"]
    _, metrics = _request(started.port, "GET", "/metrics")
    assert _metric(metrics.decode(), "edgefleet_serving_model_ready") == 0

    started.load_model()

    code, raw = _request(started.port, "GET", "/healthz")
    assert code == 200
    assert json.loads(raw)["status"] == "ok"
    _, metrics = _request(started.port, "GET", "/metrics")
    assert _metric(metrics.decode(), "edgefleet_serving_model_ready") == 1


def test_predict_returns_the_numpy_answer(ready: ServingServer, tiny: ModelFixture) -> None:
    code, body = _post(ready.port, tiny.probe_request())
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
    code, body = _post(ready.port, payload)
    assert code == 400
    assert message in body["error"]
    assert _request(ready.port, "GET", "/healthz")[0] == 200


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
    assert _request(ready.port, "GET", "/nope")[0] == 404
    assert _request(ready.port, "GET", "/v1/predict")[0] == 405


def test_metrics_count_requests_and_latency(ready: ServingServer, tiny: ModelFixture) -> None:
    for _ in range(3):
        assert _post(ready.port, tiny.probe_request())[0] == 200
    assert _post(ready.port, {"inputs": {}})[0] == 400
    _request(ready.port, "GET", "/healthz")
    code, data = _request(ready.port, "GET", "/metrics")
    text = data.decode()
    assert code == 200
    assert _metric(text, 'edgefleet_serving_requests_total{endpoint="/v1/predict",code="200"}') == 3
    assert _metric(text, 'edgefleet_serving_requests_total{endpoint="/v1/predict",code="400"}') == 1
    assert _metric(text, 'edgefleet_serving_requests_total{endpoint="/healthz",code="200"}') == 1
    assert _metric(text, "edgefleet_serving_inference_duration_seconds_count") == 3
    assert _metric(text, 'edgefleet_serving_inference_duration_seconds_bucket{le="+Inf"}') == 3
    assert 0 < _metric(text, "edgefleet_serving_inference_duration_seconds_sum") < 3
    info = f'edgefleet_serving_model_info{{name="mlp",version="v1",sha256="{tiny.sha256}"}}'
    assert _metric(text, info) == 1
    assert "# TYPE edgefleet_serving_inference_duration_seconds histogram" in text


def test_requests_are_logged_as_json_lines(ready: ServingServer, log: io.StringIO) -> None:
    _request(ready.port, "GET", "/healthz")
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
        code, body = _request(server.port, "GET", "/healthz")
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
        assert _post(server.port, {"inputs": {"x": [[1, 2], [3, 4], [5, 6]]}}) == (
            200,
            {"outputs": {"y": [[1, 2], [3, 4], [5, 6]]}, "model": server.info.as_json()},
        )
        code, body = _post(server.port, {"inputs": {"x": [[1.5, 2]]}})
        assert (code, "integers that fit int32" in body["error"]) == (400, True)
        code, body = _post(server.port, {"inputs": {"x": [[2**40, 2]]}})
        assert (code, "outside the range of int32" in body["error"]) == (400, True)
        code, body = _post(server.port, {"inputs": {"x": [[1, 2, 3]]}})
        assert (code, "int32[?, 2]" in body["error"]) == (400, True)
    finally:
        server.stop()


def test_config_from_env() -> None:
    config = ServingConfig.from_env(
        {
            "EDGEFLEET_PORT": "9000",
            "EDGEFLEET_MODEL_SHA256": "sha256:" + "AB" * 32,
            "EDGEFLEET_THREADS": "2",
        }
    )
    assert (config.port, config.model_sha256, config.threads, config.bind) == (
        9000,
        "ab" * 32,
        2,
        "0.0.0.0",  # noqa: S104 - the default for containers, checked here
    )
    with pytest.raises(ConfigError, match="EDGEFLEET_PORT='http' is not an integer"):
        ServingConfig.from_env({"EDGEFLEET_PORT": "http"})
    with pytest.raises(ConfigError, match="EDGEFLEET_MODEL_SHA256"):
        ServingConfig.from_env({"EDGEFLEET_MODEL_SHA256": "abc"})


_ALLOWED_THIRD_PARTY = {"numpy", "onnxruntime"}


def _imported(source: str, package: str) -> list[str]:
    """Absolute names of what a module of ``package`` imports, relative imports
    resolved (``from ..logs import x`` in ``edgefleet.serving`` is ``edgefleet.logs``)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.append(node.module or "")
                continue
            parts = package.split(".")
            base = parts[: len(parts) - (node.level - 1)]
            if node.level - 1 >= len(parts):
                names.append("." * node.level + (node.module or ""))  # beyond the top
            elif node.module:
                names.append(".".join([*base, node.module]))
            else:
                names += [".".join([*base, alias.name]) for alias in node.names]
    return names


def _outside_the_allowance(source: str, package: str = "edgefleet.serving") -> list[str]:
    return [
        name
        for name in _imported(source, package)
        if not (
            name == "edgefleet.serving"
            or name.startswith("edgefleet.serving.")
            or name.split(".")[0] in _ALLOWED_THIRD_PARTY
            or name.split(".")[0] in sys.stdlib_module_names
        )
    ]


@pytest.mark.parametrize(
    ("source", "outside"),
    [
        ("from .config import ServingConfig\nfrom . import logs", []),
        ("import json, numpy as np\nimport onnxruntime.capi", []),
        ("from ..logs import configure", ["edgefleet.logs"]),
        ("from .. import gateway", ["edgefleet.gateway"]),
        ("from ...edgefleet_node import protocol", ["...edgefleet_node"]),  # beyond the top
        ("import edgefleet.testing.models", ["edgefleet.testing.models"]),
        ("import structlog", ["structlog"]),
    ],
)
def test_the_import_check_resolves_relative_imports(source: str, outside: list[str]) -> None:
    assert _outside_the_allowance(source) == outside


def test_serving_imports_only_stdlib_numpy_onnxruntime_and_itself() -> None:
    for source in sorted(SERVING_DIR.glob("*.py")):
        outside = _outside_the_allowance(source.read_text())
        assert outside == [], f"{source.name} imports {outside}"
    # and the package imports without numpy/onnxruntime on the path
    result = subprocess.run(
        [sys.executable, "-S", "-E", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import edgefleet.serving as s; "
         "print('numpy' in sys.modules, 'onnxruntime' in sys.modules, sorted(s.__all__)[0])",
         str(SERVING_DIR.parents[1])],
        capture_output=True, text=True, check=True, timeout=8,
    )  # fmt: skip
    assert result.stdout.split() == ["False", "False", "ConfigError"]


def test_python_m_entry_point_serves_and_stops_on_sigterm(
    tmp_path: Path, tiny: ModelFixture
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "EDGEFLEET_MODEL_PATH": str(tiny.path),
        "EDGEFLEET_MODEL_SHA256": tiny.sha256,
        "EDGEFLEET_PORT": str(port),
        "EDGEFLEET_BIND": "127.0.0.1",
        "EDGEFLEET_THREADS": "1",
    }
    started = time.monotonic()
    service = Service(
        "serving", [sys.executable, "-m", "edgefleet.serving"], tmp_path / "log", env=env
    )
    try:

        def healthy() -> bool:
            try:
                return _request(port, "GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_until(healthy, timeout=8, what="serving /healthz 200", alive=service.check_alive)
        cold_start = time.monotonic() - started
        code, body = _post(port, tiny.probe_request())
        assert code == 200
        assert tiny.matches(body["outputs"])
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(5) == 0
    finally:
        service.stop()
    events = [json.loads(line)["event"] for line in service.log_path.read_text().splitlines()]
    assert events[0] == "listening"
    assert events[-2:] == ["signal", "stopped"]
    print(f"cold start to healthy: {cold_start:.3f}s")
