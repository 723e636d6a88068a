"""Admission control on a real aiohttp server in process (no TLS): overload answers 503
with Retry-After at once, bodies are bounded in size and time, errors are JSON."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from edgefleet.gateway.admission import middleware, read_body
from edgefleet.gateway.config import Limits
from edgefleet.gateway.metrics import GatewayMetrics


def _app(limits: Limits, gate: asyncio.Event, arrived: asyncio.Semaphore) -> web.Application:
    async def slow(_request: web.Request) -> web.Response:
        arrived.release()  # admitted: the handler runs
        await gate.wait()
        return web.json_response({})

    async def upload(request: web.Request) -> web.Response:
        return web.json_response({"size": len(await read_body(request, 100, 0.5))})

    app = web.Application(middlewares=[middleware(limits, GatewayMetrics())])
    app.add_routes([web.get("/slow", slow), web.post("/upload", upload)])
    return app


def _run(limits: Limits, scenario) -> None:
    async def main() -> None:
        gate, arrived = asyncio.Event(), asyncio.Semaphore(0)
        async with TestClient(TestServer(_app(limits, gate, arrived))) as client:
            await scenario(client, gate, arrived)

    asyncio.run(main())


def test_overload_is_refused_at_once_with_retry_after():
    async def scenario(client, gate, arrived):
        busy = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
        for _ in busy:  # both admitted and held in their handlers
            await asyncio.wait_for(arrived.acquire(), 5)
        refused = await client.get("/slow")
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "5"
        assert (await refused.json())["error"] == "Overloaded"
        gate.set()
        assert [r.status for r in await asyncio.gather(*busy)] == [200, 200]
        assert (await client.get("/slow")).status == 200  # capacity is back

    _run(Limits(max_inflight=2), scenario)


def test_bodies_are_bounded_and_errors_are_json():
    async def scenario(client, _gate, _arrived):
        ok = await client.post("/upload", data=b"x" * 100)
        assert (ok.status, (await ok.json())["size"]) == (200, 100)
        big = await client.post("/upload", data=b"x" * 101)
        assert (big.status, (await big.json())["error"]) == (413, "TooLarge")

        async def trickle():
            yield b"x"
            await asyncio.sleep(2)
            yield b"y"

        slow = await client.post("/upload", data=trickle())
        assert (slow.status, (await slow.json())["error"]) == (408, "BodyTimeout")
        missing = await client.get("/nowhere")
        assert missing.status == 404
        assert json.loads(await missing.text())["error"] == "NotFound"

    _run(Limits(), scenario)
