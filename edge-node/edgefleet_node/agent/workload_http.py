"""Talking HTTP to a workload's inference server: health, the probe inference, metrics.

The server in model images (``edgefleet.serving``) answers ``GET /healthz`` (200 when
the model is loaded and warmed up, 503 ``loading``/``failed`` before), ``POST
/v1/predict`` with ``{"inputs": {name: nested lists}}`` and ``GET /metrics``. The
pure parts — building the probe request and judging its answer — are separate from
the one function that does I/O (:func:`request`, stdlib ``http.client``, loopback
only, a timeout on every call), so they can be unit-tested.
"""

from __future__ import annotations

import http.client
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgefleet_node.protocol.desired import Probe

__all__ = [
    "MAX_RESPONSE",
    "Answer",
    "ProbeVerdict",
    "judge",
    "nest",
    "probe_body",
    "request",
]

MAX_RESPONSE = 4 << 20


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


@dataclass(frozen=True)
class ProbeVerdict:
    ok: bool
    message: str
    max_error: float | None = None


def request(
    host: str, port: int, method: str, path: str, body: bytes | None, timeout: float
) -> Answer:
    """One HTTP request to the workload; raises ``OSError`` / ``http.client.HTTPException``."""
    conn = http.client.HTTPConnection(host, port, timeout=max(timeout, 0.05))
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read(MAX_RESPONSE + 1)
        if len(data) > MAX_RESPONSE:
            raise http.client.HTTPException(f"{path} answered more than {MAX_RESPONSE} bytes")
        return Answer(response.status, data)
    finally:
        conn.close()


def nest(values: Sequence[float], shape: Sequence[int]) -> list[Any]:
    """Row-major ``values`` as nested lists of ``shape``; ValueError when sizes differ."""
    size = math.prod(shape)
    if size != len(values):
        raise ValueError(f"shape {list(shape)} holds {size} values, the probe has {len(values)}")
    flat: list[Any] = list(values)
    for dim in reversed(shape[1:]):
        flat = [flat[i : i + dim] for i in range(0, len(flat), dim)]
    return flat


def probe_body(probe: Probe) -> bytes:
    """The ``/v1/predict`` body for the probe input."""
    return json.dumps({"inputs": {probe.input_name: nest(probe.values, probe.shape)}}).encode()


def _flatten(value: Any) -> list[float]:
    if isinstance(value, list):
        return [x for item in value for x in _flatten(item)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [float(value)]
    raise ValueError(f"{value!r} is not a number")


def judge(probe: Probe, answer: Answer) -> ProbeVerdict:
    """Whether the predict answer holds ``probe.expected`` within ``probe.tolerance``
    per element (absolute difference, as the InferenceModel API defines it)."""
    if answer.status != 200:
        text = answer.body[:300].decode("utf-8", "replace")
        return ProbeVerdict(False, f"predict answered {answer.status}: {text}")
    try:
        doc = json.loads(answer.body)
        outputs = doc["outputs"]
        got = _flatten(outputs[probe.output_name])
    except (ValueError, KeyError, TypeError) as exc:
        return ProbeVerdict(False, f"predict answer has no usable {probe.output_name!r}: {exc}")
    if len(got) != len(probe.expected):
        return ProbeVerdict(
            False, f"output {probe.output_name!r} has {len(got)} values, expected "
            f"{len(probe.expected)}"
        )  # fmt: skip
    error = max(abs(g - e) for g, e in zip(got, probe.expected, strict=True))
    if not error <= probe.tolerance:  # NaN fails too
        return ProbeVerdict(
            False,
            f"output {probe.output_name!r} differs from the expected answer by up to "
            f"{error:.6g} (tolerance {probe.tolerance:g})",
            error,
        )
    return ProbeVerdict(True, "", error)
