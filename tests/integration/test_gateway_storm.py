"""Connection storms meet admission before the TLS handshake (real gateway, API server
and TLS): beyond ``max_handshakes`` connections wait in the kernel's queue, beyond
``max_connections`` they are reset before any TLS, and an enrolled device's calls on
its connection keep working through both; the gateway stays up and capacity returns."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Iterator

import pytest

from edgefleet.gateway.config import Limits
from edgefleet.testing.gatewayrun import GatewayReplica, loopback_config
from edgefleet.testing.procs import wait_until

pytestmark = pytest.mark.integration

LIMITS = Limits(
    max_connections=24, max_handshakes=4, handshake_timeout=2, body_timeout=2, idle_timeout=60
)


@pytest.fixture(scope="module")
def gateway(crds, gateway_namespace) -> Iterator[GatewayReplica]:
    """This module's own replica, with small admission limits."""
    cfg = loopback_config(gateway_namespace, "gw-storm", limits=LIMITS)
    with GatewayReplica(cfg, crds.kubeconfig) as gw:
        yield gw


def _metric(gateway: GatewayReplica, name: str, **labels: str) -> float:
    assert gateway.gateway is not None
    registry = gateway.gateway.metrics.registry
    value = gateway.call(lambda: registry.get_sample_value(name, labels or None))
    return float(value or 0.0)


def _client_context(fleet) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=fleet.gateway.pki().gateway_ca_bundle().decode())


async def _healthz(port: int, ctx: ssl.SSLContext) -> int:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"
    )
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        return int((await reader.readline()).split()[1])
    finally:
        writer.close()


def test_silent_connections_queue_behind_the_handshake_limit(fleet):
    sim = fleet.enrolled("d1")
    assert fleet.run(sim.poll(wait=0)).status == 200  # its keep-alive connection is open
    port = fleet.gateway.port
    count = 3 * LIMITS.max_handshakes

    async def storm() -> tuple[list[float], list[bool]]:
        """``count`` clients that connect and never say hello; when each is closed."""
        started = time.monotonic()
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]
        polls: list[bool] = []

        async def closed(reader: asyncio.StreamReader) -> float:
            with contextlib.suppress(ConnectionResetError):  # a reset is a close too
                assert await asyncio.wait_for(reader.read(), 60) == b""
            return time.monotonic() - started

        waits = [asyncio.create_task(closed(r)) for r, _w in conns]
        try:
            await asyncio.sleep(0)
            deadline = time.monotonic() + 10
            while _metric(fleet.gateway, "edgefleet_gateway_handshakes_in_flight") < 4:
                assert time.monotonic() < deadline, "the handshake slots never filled"
                await asyncio.sleep(0.05)
            for _ in range(3):  # slots full: the device's own connection is not affected
                polls.append((await sim.poll(wait=0)).status in (200, 304))
            assert _metric(fleet.gateway, "edgefleet_gateway_handshakes_in_flight") <= 4
            return sorted(await asyncio.gather(*waits)), polls
        finally:
            for _r, w in conns:
                w.close()

    before = _metric(fleet.gateway, "edgefleet_gateway_handshake_failures_total", kind="Timeout")
    closed_at, polls = fleet.run(storm())
    assert polls == [True, True, True]  # answered (200 or 304 not modified)
    timeout = LIMITS.handshake_timeout
    # Served four at a time: three rounds of the handshake timeout, not one.
    assert closed_at[0] >= timeout - 0.5
    assert closed_at[-1] >= 3 * timeout - 0.5, closed_at
    after = _metric(fleet.gateway, "edgefleet_gateway_handshake_failures_total", kind="Timeout")
    assert after - before == count
    assert fleet.run(_healthz(port, _client_context(fleet))) == 200


def test_connections_beyond_the_cap_are_reset_before_tls(fleet):
    sim = fleet.enrolled("d2")
    assert fleet.run(sim.poll(wait=0)).status == 200
    port = fleet.gateway.port
    ctx = _client_context(fleet)
    refused_before = _metric(
        fleet.gateway, "edgefleet_gateway_connections_refused_total", reason="MaxConnections"
    )

    async def connect() -> asyncio.StreamWriter | None:
        try:
            _r, w = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"),
                30,
            )
        except (ConnectionError, ssl.SSLError):
            return None
        return w

    async def storm() -> tuple[int, int, list[bool], int | str]:
        attempts = 2 * LIMITS.max_connections
        held = await asyncio.gather(*(connect() for _ in range(attempts)))
        try:
            open_ = [w for w in held if w is not None]
            polls = [(await sim.poll(wait=0)).status in (200, 304) for _ in range(3)]
            try:  # at the cap: a new connection is refused too
                extra: int | str = await _healthz(port, ctx)
            except (ConnectionError, ssl.SSLError) as exc:
                extra = type(exc).__name__
            return attempts, len(open_), polls, extra
        finally:
            for w in held:
                if w is not None:
                    w.close()

    attempts, opened, polls, extra = fleet.run(storm())
    # The device's connection counts: the storm got the rest of the cap, no more.
    assert opened <= LIMITS.max_connections - 1
    assert opened >= LIMITS.max_connections - 4  # (another test's connection may linger)
    assert polls == [True, True, True]  # answered (200 or 304 not modified)
    assert extra != 200
    refused = (
        _metric(
            fleet.gateway, "edgefleet_gateway_connections_refused_total", reason="MaxConnections"
        )
        - refused_before
    )
    assert refused >= attempts - opened
    # The storm gone, capacity is back and the gateway is up.
    wait_until(
        lambda: _metric(fleet.gateway, "edgefleet_gateway_connections_open") <= 2,
        timeout=30,
        what="the storm's connections closed",
        interval=0.1,
    )
    assert fleet.run(_healthz(port, ctx)) == 200
    assert fleet.run(sim.poll(wait=0)).status in (200, 304)
