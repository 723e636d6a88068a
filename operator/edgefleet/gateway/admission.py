"""Admission control and the error shape: what keeps one replica up under any input.

- Every error is JSON ``{"error": "<CamelCaseReason>", "message": "..."}``
  (:class:`GatewayError`, also for aiohttp's own 404/405/413).
- At most ``max_inflight`` requests are worked on at once and ``max_longpolls`` long-polls
  held; beyond that a request is answered ``503`` with ``Retry-After`` at once (the
  agent backs off with jitter), so a storm degrades into retries, not a collapse.
- Bodies are read with a size limit (``413`` before reading when ``Content-Length``
  says so) and a deadline (``408``), so a slow client cannot hold a handler.
- :class:`ConnectionGate` counts open connections for ``/metrics`` and drops any beyond
  the cap once the handshake is done (a backstop: :mod:`edgefleet.gateway.accept`
  enforces the cap, derived from the open-file limit, before the handshake).
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from edgefleet.gateway.config import Limits
from edgefleet.gateway.metrics import GatewayMetrics
from edgefleet_node.protocol import wire

__all__ = [
    "ConnectionGate",
    "GatewayError",
    "error_response",
    "middleware",
    "read_body",
]

log = structlog.get_logger("edgefleet.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LONGPOLL_ROUTES = frozenset({wire.DESIRED_PATH})
_UNMETERED = frozenset({"/healthz", "/readyz", "/metrics"})


class GatewayError(Exception):
    """An answer other than success: HTTP status, CamelCase reason, message."""

    def __init__(
        self, status: int, reason: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = json.dumps({"error": reason, "message": message}).encode()
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    if info is None:
        return "unmatched"
    return info.canonical if not info.canonical.startswith("/v2") else "/v2"


def middleware(limits: Limits, metrics: GatewayMetrics) -> Any:
    inflight = 0
    longpolls = 0
    busy = {"Retry-After": str(limits.retry_after)}

    @web.middleware
    async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal inflight, longpolls
        route = _route(request)
        longpoll = route in LONGPOLL_ROUTES
        started = time.monotonic()
        response: web.StreamResponse
        if longpoll and longpolls >= limits.max_longpolls:
            response = error_response(503, "Overloaded", "too many long-polls open", busy)
        elif not longpoll and route not in _UNMETERED and inflight >= limits.max_inflight:
            response = error_response(503, "Overloaded", "too many requests at once", busy)
        else:
            if longpoll:
                longpolls += 1
            else:
                inflight += 1
            try:
                response = await handler(request)
            except GatewayError as exc:
                metrics.refusals.labels(exc.reason).inc()
                response = error_response(exc.status, exc.reason, exc.message, exc.headers)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                reason = exc.reason.title().replace(" ", "") if exc.reason else "Error"
                response = error_response(exc.status, reason, exc.text or exc.reason)
            finally:
                if longpoll:
                    longpolls -= 1
                else:
                    inflight -= 1
        metrics.requests.labels(route, str(response.status)).inc()
        if not longpoll:
            metrics.latency.labels(route).observe(time.monotonic() - started)
        return response

    return admit


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The request body, at most ``limit`` bytes, received within ``timeout`` seconds."""
    if request.content_length is not None and request.content_length > limit:
        raise GatewayError(413, "TooLarge", f"the body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise GatewayError(
                        413, "TooLarge", f"the body is over the limit of {limit} bytes"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise GatewayError(
            408,
            "BodyTimeout",
            f"the body did not arrive within {timeout:g} seconds",
            headers={"Connection": "close"},
        ) from None
    return b"".join(chunks)


class ConnectionGate:
    """Counts open connections and refuses new ones beyond ``limit``."""

    def __init__(self, limit: int, metrics: GatewayMetrics) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0
        self._metrics = metrics
        self._transports: set[asyncio.BaseTransport] = set()
        self._raw: weakref.WeakSet[asyncio.Transport] = weakref.WeakSet()
        self.closing = False

    def abort_all(self) -> None:
        """Drop every connection still open (the end of a shutdown)."""
        self.closing = True
        for transport in list(self._transports):
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            else:
                transport.close()
        self._transports.clear()
        # asyncio's TLS transport forgets its socket after a second close() (aiohttp
        # closes twice), so also abort the socket transports under them still open.
        for raw in list(self._raw):
            if not raw.is_closing():
                raw.abort()

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        gate = self

        class Counted(asyncio.Protocol):
            def __init__(self) -> None:
                self.inner = inner()
                self.counted = False
                self.transport: asyncio.BaseTransport | None = None

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                if gate.closing or gate.open >= gate.limit:
                    gate.refused += 1
                    if isinstance(transport, asyncio.Transport):
                        transport.abort()
                    else:
                        transport.close()
                    return
                gate.open += 1
                gate._transports.add(transport)
                raw = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
                if isinstance(raw, asyncio.Transport):
                    gate._raw.add(raw)
                self.transport = transport
                self.counted = True
                gate._metrics.connections_open.set(gate.open)
                self.inner.connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                if self.counted:
                    gate._transports.discard(self.transport)
                    gate.open -= 1
                    self.counted = False
                    gate._metrics.connections_open.set(gate.open)
                    self.inner.connection_lost(exc)

            def data_received(self, data: bytes) -> None:
                self.inner.data_received(data)

            def eof_received(self) -> bool | None:
                return self.inner.eof_received()

            def pause_writing(self) -> None:
                self.inner.pause_writing()

            def resume_writing(self) -> None:
                self.inner.resume_writing()

        return Counted
