"""Gateway start-up: read configuration, make every client once, serve until SIGTERM.

The composition root of ``edgefleet gateway``. Order matters: the PKI is loaded (or
generated) first, then the EdgeDevice watch cache is filled, and only then does the
port open, so a device reconnecting after a restart is never refused for a device the
replica has not read yet. The PKI is re-read periodically (rotation reaches running
replicas without a restart); the Lease is renewed; queued status writes are flushed.
On SIGTERM the replica stops accepting, answers open long-polls (devices reconnect to
another replica), flushes what it can and deletes its Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from edgefleet.clients import pki as pki_client
from edgefleet.clients import tokens
from edgefleet.clients.devicecache import DeviceCache
from edgefleet.clients.kube import KubeClient
from edgefleet.clients.pki_store import PkiNotReadyError
from edgefleet.clients.registry_stream import RegistryReader
from edgefleet.clients.replicas import ReplicaLeases
from edgefleet.gateway import oci
from edgefleet.gateway.accept import Acceptor, connection_cap, listen
from edgefleet.gateway.admission import ConnectionGate
from edgefleet.gateway.app import build_app
from edgefleet.gateway.config import GatewayConfig
from edgefleet.gateway.device_routes import DeviceRoutes, TokenChecker, TokenRedeemer
from edgefleet.gateway.identity import Identifier
from edgefleet.gateway.metrics import GatewayMetrics
from edgefleet.gateway.oci_reach import Assignment, assignments
from edgefleet.gateway.sessions import Sessions
from edgefleet.gateway.status import StatusWriter

__all__ = ["Gateway", "run", "serve"]

log = structlog.get_logger("edgefleet.gateway")


def _kubernetes_api() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


@dataclass
class Gateway:
    """A running replica's parts (tests and the benchmark reach in through it)."""

    cfg: GatewayConfig
    kube: KubeClient
    cache: DeviceCache
    writer: StatusWriter
    sessions: Sessions
    routes: DeviceRoutes
    metrics: GatewayMetrics
    gate: ConnectionGate
    leases: ReplicaLeases
    port: int = 0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


async def serve(
    cfg: GatewayConfig,
    *,
    kube: KubeClient | None = None,
    pki: Any = None,
    redeem: TokenRedeemer | None = None,
    check_token: TokenChecker | None = None,
    load_pki: Callable[[], Any] | None = None,
    extra_routes: Callable[[Gateway], list[web.AbstractRouteDef]] | None = None,
    started: Callable[[Gateway], Awaitable[None] | None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is not given)."""
    kube = kube or KubeClient.from_environment()
    if redeem is None or (pki is None and load_pki is None):
        api = await asyncio.to_thread(_kubernetes_api)
        from kubernetes import client

        core = client.CoreV1Api(api)
        load_pki = load_pki or functools.partial(
            pki_client.load_or_create,
            api,
            cfg.namespace,
            cfg.names,
            device_cert_lifetime=cfg.cert_lifetime,
        )
        if redeem is None:
            redeem = functools.partial(tokens.redeem, core, cfg.namespace)
            check_token = check_token or functools.partial(tokens.check, core, cfg.namespace)
    if pki is None:
        assert load_pki is not None
        pki = await _first_pki(load_pki)
    tls = pki_client.ServerTls(pki)
    metrics = GatewayMetrics()
    cache = DeviceCache(kube, cfg.watch_namespaces)
    leases = ReplicaLeases(kube, cfg.namespace, cfg.replica, cfg.lease_seconds)
    writer = StatusWriter(
        kube,
        cache,
        metrics,
        replica=cfg.replica,
        last_seen_interval=cfg.last_seen_interval,
        write_rate=cfg.write_rate,
    )
    sessions = Sessions(
        cache,
        writer,
        metrics,
        replica=cfg.replica,
        grace=cfg.online_grace,
        last_seen_interval=cfg.last_seen_interval,
        leases=leases,
    )
    cache.add_listener(sessions.on_change)
    identifier = Identifier(pki, cache)
    routes = DeviceRoutes(
        cfg, cache, identifier, sessions, writer, metrics, pki, redeem, check_token=check_token
    )
    gate = ConnectionGate(connection_cap(cfg.limits.max_connections), metrics)
    gw = Gateway(cfg, kube, cache, writer, sessions, routes, metrics, gate, leases)

    async def reload_pki() -> None:
        assert load_pki is not None
        while True:
            await asyncio.sleep(cfg.pki_reload)
            try:
                new = await asyncio.to_thread(load_pki)
            except Exception as exc:  # keep serving with what we have
                log.warning("PKI reload failed; keeping the current one", error=str(exc)[:300])
                continue
            if new.trust_serial != routes.pki.trust_serial:
                log.info("PKI changed", trust_serial=new.trust_serial)
            tls.update(new)
            identifier.reset(new)
            routes.pki = new

    reader: RegistryReader | None = None
    oci_routes: list[web.AbstractRouteDef] = []
    if cfg.registry_url is not None:
        reader = RegistryReader(
            cfg.registry_url,
            ca_bundle=cfg.registry_ca,
            username=cfg.registry_username,
            password=cfg.registry_password,
        )

        async def authorise(request: web.Request) -> tuple[Assignment, ...]:
            _ident, device = identifier.device(request)
            return assignments(device)

        proxy = oci.metered(reader, authorise, metrics)
        oci_routes = list(proxy.routes())

    def ready() -> str | None:
        if not cache.ready.is_set():
            return "the EdgeDevice cache is not filled yet"
        if gw.stopping.is_set():
            return "shutting down"
        return None

    app = build_app(
        routes,
        metrics,
        cfg.limits,
        ready=ready,
        extra_routes=[*oci_routes, *(extra_routes(gw) if extra_routes else ())],
    )
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=cfg.limits.idle_timeout,
        handle_signals=False,
        shutdown_timeout=5.0,
    )
    await runner.setup()
    async with asyncio.TaskGroup() as group:
        background = [
            group.create_task(cache.run()),
            group.create_task(leases.run()),
            group.create_task(writer.run()),
            group.create_task(sessions.run(min(5.0, cfg.online_grace.total_seconds() / 3))),
        ]
        if load_pki is not None:
            background.append(group.create_task(reload_pki()))
        started_at = time.monotonic()
        await cache.ready.wait()
        acceptor = Acceptor(
            listen(cfg.host, cfg.port, backlog=4096),
            gate.factory(runner.server),  # type: ignore[arg-type]
            tls.context,
            cfg.limits,
            gate,
            metrics,
        )
        acceptor.start()
        gw.port = acceptor.port
        log.info(
            "gateway serving",
            port=gw.port,
            replica=cfg.replica,
            devices=len(cache),
            max_connections=gate.limit,
            max_handshakes=cfg.limits.max_handshakes,
            sync_seconds=round(time.monotonic() - started_at, 3),
        )
        if started is not None:
            result = started(gw)
            if result is not None:
                await result
        stop = stop or _signal_event()
        await stop.wait()
        log.info("gateway stopping", replica=cfg.replica)
        gw.stopping.set()
        await acceptor.close()  # stop accepting; handshakes under way are dropped
        routes.stop()  # open long-polls answer 304 now; devices reconnect elsewhere
        await runner.shutdown()  # answers open long-polls and closes connections
        await runner.cleanup()
        gate.abort_all()  # whatever did not finish its TLS shutdown
        await asyncio.sleep(0.1)  # let the aborted transports close their sockets
        for task in background:
            task.cancel()
        await asyncio.sleep(0)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await leases.release()
    if reader is not None:
        await reader.aclose()
    await kube.aclose()


async def _first_pki(load: Callable[[], Any]) -> Any:
    """Load the PKI; wait (with a log line) while the operator has not published the
    image-signing public key yet. Malformed material raises (exit code 2)."""
    delay = 1.0
    while True:
        try:
            return await asyncio.to_thread(load)
        except PkiNotReadyError as exc:
            log.warning("PKI not ready; waiting", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def _signal_event() -> asyncio.Event:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event


def run(cfg: GatewayConfig) -> None:
    """Run one replica until SIGTERM/SIGINT (on uvloop: ~6x less memory per TLS connection)."""
    import uvloop

    uvloop.run(serve(cfg))
