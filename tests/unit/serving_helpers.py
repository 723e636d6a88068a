"""Shared pieces of the inference-server unit tests: plain HTTP/1.1 requests to a
server on 127.0.0.1, reading one Prometheus sample, and the ``tiny`` ONNX model
fixture (registered for tests/unit by its conftest.py)."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from edgefleet.testing.models import ModelFixture, make_mlp

__all__ = ["metric", "post", "request", "tiny"]


def request(
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


def post(port: int, payload: Any) -> tuple[int, dict[str, Any]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    code, data = request(port, "POST", "/v1/predict", body, {"Content-Type": "application/json"})
    return code, json.loads(data)


def metric(text: str, prefix: str) -> float:
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(prefix + " ")]
    assert len(values) == 1, f"{prefix} appears {len(values)} times in:\n{text}"
    return float(values[0])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ModelFixture:
    """A 50 kB MLP; module-scoped (cheap: built in milliseconds, read-only in the tests)."""
    return make_mlp(tmp_path_factory.mktemp("model") / "mlp.onnx", target_bytes=50_000, seed=7)
