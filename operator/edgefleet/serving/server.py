"""The HTTP side of the inference server: routes, request limits, health and shutdown.

Endpoints:

- ``GET /healthz`` — 200 ``{"status": "ok", "model": …}`` once the model is loaded
  and one warm-up inference ran; 503 with ``"loading"`` or ``"failed"`` (and the
  error) before that;
- ``POST /v1/predict`` — body ``{"inputs": {"<name>": nested lists}}``; answers
  ``{"outputs": {"<name>": nested lists}, "model": {"name", "version", "sha256"}}``.
  Bad requests get a 4xx with ``{"error": "<what is wrong>"}``: 400 for anything
  about the JSON or the inputs, 411 without ``Content-Length``, 413 above
  ``EDGEFLEET_MAX_BODY_BYTES`` (refused before the body is read), 422 when the
  model's answer holds NaN or infinity (JSON cannot carry them);
- ``GET /metrics`` — Prometheus text (:mod:`edgefleet.serving.metrics`).

Each connection serves one request and closes (HTTP/1.0), so shutdown only has to
wait for requests in flight, never for idle keep-alive connections; a client that
stalls mid-request is dropped after :data:`REQUEST_TIMEOUT` seconds.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgefleet.serving.config import ServingConfig
from edgefleet.serving.logs import JsonLog
from edgefleet.serving.metrics import Metrics
from edgefleet.serving.model import (
    InputError,
    LoadedModel,
    ModelError,
    ModelInfo,
    OutputError,
)

__all__ = ["REQUEST_TIMEOUT", "ServingServer"]

REQUEST_TIMEOUT = 10.0


def _reject_constant(name: str) -> None:
    raise InputError(f"{name} is not a number JSON allows")


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in flight
    block_on_close = True
    owner: ServingServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT
    server_version = "edgefleet-serving"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib access log; :meth:`_send` logs a JSON line instead."""

    def _send(self, code: int, body: bytes, content_type: str, started: float) -> None:
        path = self.path.split("?", 1)[0]
        owner = self.server.owner
        # counted and logged before the client can read the answer, so a client that
        # asks /metrics next always sees its own request
        owner.metrics.count_request(path, code)
        owner.log.info(
            "request",
            method=self.command,
            path=path,
            status=code,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, payload: dict[str, Any], started: float) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json", started)

    def _route(self, method: str) -> None:
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        owner = self.server.owner
        try:
            if path == "/healthz" and method in ("GET", "HEAD"):
                code, payload = owner.health()
                self._json(code, payload, started)
            elif path == "/metrics" and method in ("GET", "HEAD"):
                body = owner.metrics.render().encode()
                self._send(200, body, "text/plain; version=0.0.4; charset=utf-8", started)
            elif path == "/v1/predict" and method == "POST":
                code, payload = self._predict(owner)
                self._json(code, payload, started)
            elif path in ("/healthz", "/metrics", "/v1/predict"):
                self._json(405, {"error": f"{method} is not allowed on {path}"}, started)
            else:
                self._json(404, {"error": f"no endpoint {path}"}, started)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            owner.log.warning("client_gone", path=path)
        except Exception as exc:  # a bug of ours: answer 500, log it, keep serving
            owner.log.error("internal_error", path=path, error=repr(exc))
            self._json(500, {"error": "internal error; see the server log"}, started)

    def _predict(self, owner: ServingServer) -> tuple[int, dict[str, Any]]:
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length_header is None:
            self.close_connection = True
            return 411, {"error": "send the body with a Content-Length header"}
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError(length_header)
        except ValueError:
            self.close_connection = True
            return 400, {"error": f"Content-Length {length_header!r} is not a byte count"}
        limit = owner.config.max_body_bytes
        if length > limit:
            self.close_connection = True
            return 413, {"error": f"body of {length} bytes is larger than the limit of {limit}"}
        body = self.rfile.read(length)
        if len(body) != length:
            return 400, {"error": f"body ended after {len(body)} of {length} bytes"}
        return owner.predict(body)

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")


class ServingServer:
    """One server: the constructor binds; then :meth:`start`, :meth:`load_model`, :meth:`stop`."""

    def __init__(self, config: ServingConfig, *, log: JsonLog | None = None) -> None:
        self.config = config
        self.log = log if log is not None else JsonLog()
        self.info = ModelInfo(config.model_name, config.model_version, config.model_sha256)
        self.metrics = Metrics(
            name=self.info.name, version=self.info.version, sha256=self.info.sha256
        )
        self._model: LoadedModel | None = None
        self._failure: str | None = None
        self._httpd = _Server((config.bind, config.port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``EDGEFLEET_PORT=0``)."""
        port: int = self._httpd.server_address[1]
        return port

    @property
    def ready(self) -> bool:
        """True once the model is loaded and warmed up."""
        return self._model is not None

    def start(self) -> None:
        """Serve HTTP on a background thread; health says 503 until :meth:`load_model` ends."""
        # Logged first: once the thread runs, request lines may be written at any time.
        self.log.info("listening", bind=self.config.bind, port=self.port)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="edgefleet-serving-http",
            daemon=True,
        )
        self._thread.start()

    def load_model(self) -> None:
        """Load the model and run one warm-up inference; raises :class:`ModelError`."""
        started = time.perf_counter()
        self.log.info("model_loading", path=self.config.model_path, **self.info.as_json())
        try:
            model, sha = LoadedModel.load(
                self.config.model_path,
                expected_sha256=self.config.model_sha256,
                threads=self.config.threads,
            )
            model.warm_up()
        except ModelError as exc:
            self._failure = str(exc)
            self.log.error("model_failed", error=str(exc))
            raise
        if not self.info.sha256:
            self.info = ModelInfo(self.info.name, self.info.version, sha)
            self.metrics.set_info(name=self.info.name, version=self.info.version, sha256=sha)
        seconds = time.perf_counter() - started
        self.metrics.set_loaded(seconds)
        self._model = model
        inputs = [spec.describe() for spec in model.inputs]
        self.log.info(
            "model_ready",
            load_seconds=round(seconds, 4),
            inputs=inputs,
            sha256=sha,
            runtime=model.runtime,
        )

    def health(self) -> tuple[int, dict[str, Any]]:
        """Status code and body of ``/healthz``."""
        if self._model is not None:
            return 200, {"status": "ok", "model": self.info.as_json()}
        if self._failure is not None:
            return 503, {"status": "failed", "error": self._failure}
        return 503, {"status": "loading"}

    def predict(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """Status code and body of ``/v1/predict`` for a request body."""
        model = self._model
        if model is None:
            code, payload = self.health()
            return code, {"error": f"the model is not ready ({payload['status']})"}
        try:
            request = json.loads(body, parse_constant=_reject_constant)
            if not isinstance(request, dict):
                raise InputError('the body must be a JSON object {"inputs": {...}}')
            extra = sorted(set(request) - {"inputs"})
            if extra:
                raise InputError(f'unknown fields {extra}; the body is {{"inputs": {{...}}}}')
            if "inputs" not in request:
                raise InputError('the body has no "inputs" object')
            outputs, seconds = model.run(model.feeds(request["inputs"]))
        except InputError as exc:
            return 400, {"error": str(exc)}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return 400, {"error": f"the body is not valid JSON: {exc}"}
        except RecursionError:
            return 400, {"error": "the body nests lists deeper than any model input"}
        except OutputError as exc:
            return 422, {"error": str(exc)}
        self.metrics.observe_inference(seconds)
        return 200, {"outputs": outputs, "model": self.info.as_json()}

    def stop(self) -> None:
        """Stop accepting, wait for requests in flight, close the socket; idempotent."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        self.log.info("stopped")
