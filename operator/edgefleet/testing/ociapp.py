"""The gateway's ``/v2/`` routes served alone, for tests and benchmarks of the proxy.

:func:`serve_oci` runs an aiohttp app in a background thread (its own event loop) on
``127.0.0.1:<free port>`` with the gateway's real TLS context (:class:`ServerTls`: TLS
>= 1.2, device certificates verified against the device CAs) and the real
:class:`~edgefleet.gateway.oci.OciProxy` over a real registry. Only the device lookup
is the test's: a mapping from ``(namespace, device)`` to its assignments stands in for
the EdgeDevice watch cache of the full gateway. Always torn down on exit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from edgefleet.clients.pki import GatewayPki, ServerTls
from edgefleet.clients.registry_stream import RegistryReader
from edgefleet.gateway import oci
from edgefleet.gateway.metrics import GatewayMetrics
from edgefleet.gateway.oci_reach import Assignment

__all__ = ["MetricTotal", "OciApp", "serve_oci"]


@dataclass(frozen=True)
class MetricTotal:
    """A counter's value read from the app's Prometheus registry."""

    metrics: GatewayMetrics
    name: str

    @property
    def total(self) -> int:
        return int(self.metrics.registry.get_sample_value(self.name) or 0)


@dataclass
class OciApp:
    port: int
    metrics: GatewayMetrics
    tls: ServerTls
    address: str = "127.0.0.1"

    @property
    def counter(self) -> MetricTotal:
        """Bytes streamed (``edgefleet_gateway_proxied_bytes_total``)."""
        return MetricTotal(self.metrics, "edgefleet_gateway_proxied_bytes_total")

    @property
    def stalls(self) -> MetricTotal:
        """Downloads cut off for a stalled device (``edgefleet_gateway_oci_stalls_total``)."""
        return MetricTotal(self.metrics, "edgefleet_gateway_oci_stalls_total")

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"


def _peer(request: web.Request) -> bytes | None:
    transport = request.transport
    obj = transport.get_extra_info("ssl_object") if transport is not None else None
    return obj.getpeercert(binary_form=True) if obj is not None else None


@contextmanager
def serve_oci(
    pki: GatewayPki,
    registry_url: str,
    registry_ca: Path | None,
    devices: Mapping[tuple[str, str], Sequence[Assignment]],
    *,
    address: str = "127.0.0.1",
    use_uvloop: bool = False,
    stall_timeout: float = 60.0,
) -> Iterator[OciApp]:
    """Serve on ``address`` (loopback by default; Docker treats 127.0.0.0/8 as an
    insecure registry and then ignores ``certs.d``, so its test binds the host's own
    non-loopback address — traffic still never leaves the machine); ``use_uvloop`` runs
    it on uvloop, as the gateway does."""
    tls = ServerTls(pki)
    metrics = GatewayMetrics()
    loop: asyncio.AbstractEventLoop
    if use_uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, object] = {}

    async def authorise(request: web.Request) -> Sequence[Assignment]:
        der = _peer(request)
        if der is None:
            raise web.HTTPUnauthorized(text="a client certificate is required")
        try:
            _, namespace, device = tls.pki.verify_client(der)
        except ValueError:
            raise web.HTTPUnauthorized(text="the client certificate is not valid") from None
        return devices.get((namespace, device), ())

    async def start() -> None:
        reader = RegistryReader(registry_url, ca_bundle=registry_ca)
        proxy = oci.metered(reader, authorise, metrics, stall_timeout=stall_timeout)
        app = web.Application()
        app.add_routes(proxy.routes())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, address, 0, ssl_context=tls.context)
        await site.start()
        state.update(runner=runner, reader=reader, port=runner.addresses[0][1])

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:
            state["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="oci-app", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in state or "port" not in state:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        raise RuntimeError(f"the OCI app did not start: {state.get('error')!r}")
    try:
        yield OciApp(int(str(state["port"])), metrics, tls, address)
    finally:

        async def stop() -> None:
            runner = state["runner"]
            reader = state["reader"]
            assert isinstance(runner, web.AppRunner)
            assert isinstance(reader, RegistryReader)
            await runner.cleanup()
            await reader.aclose()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
