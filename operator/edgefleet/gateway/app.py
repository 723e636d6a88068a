"""The aiohttp application: device routes, the OCI proxy, health, readiness, metrics.

:func:`build_app` wires already-made parts (no I/O here); :mod:`edgefleet.gateway.server`
makes them and serves the app over TLS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edgefleet.gateway.admission import error_response, middleware
from edgefleet.gateway.config import Limits
from edgefleet.gateway.device_routes import DeviceRoutes
from edgefleet.gateway.metrics import GatewayMetrics

__all__ = ["build_app"]


def build_app(
    routes: DeviceRoutes,
    metrics: GatewayMetrics,
    limits: Limits,
    *,
    ready: Callable[[], str | None],
    extra_routes: Iterable[web.AbstractRouteDef] = (),
) -> web.Application:
    """``ready()`` returns ``None`` when the replica can serve, else why not."""
    # Bodies are read by the handlers with their own limits; this is a backstop.
    app = web.Application(middlewares=[middleware(limits, metrics)], client_max_size=1024**2)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        why = ready()
        if why is not None:
            return error_response(503, "NotReady", why)
        return web.json_response({"status": "ready"})

    async def prometheus(_request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", prometheus),
            *routes.routes(),
            *extra_routes,
        ]
    )
    return app
