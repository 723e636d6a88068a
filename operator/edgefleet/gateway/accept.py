"""Admission before the TLS handshake: the gateway's own accept loop.

A TLS handshake costs the gateway ~3.5 ms of CPU and every socket a file descriptor,
so a connection storm (a fleet reconnecting after an outage, or an attacker) must be
bounded *before* the handshake, not after it. :class:`Acceptor` replaces the event
loop's built-in accept loop (``loop.create_server``), which accepts every pending
connection and starts every handshake at once:

- at most ``max_handshakes`` handshakes are in flight. While that many are under way
  the loop stops accepting: further connections wait in the kernel's accept queue
  (``backlog``), and once that is full the kernel drops SYNs, which clients retry. A
  storm becomes a queue served at the rate the CPU allows, instead of thousands of
  concurrent handshakes that all miss their timeout;
- at most ``max_connections`` sockets are open (handshaking + established). A
  connection beyond is accepted and reset at once, before any TLS: it costs one
  ``accept``/``close`` and the device backs off and retries. The cap is what the
  process's open-file limit allows (:func:`connection_cap`);
- every handshake must finish within ``handshake_timeout`` seconds (a client that
  connects and says nothing holds a slot that long, no longer).

Each accepted socket is handed to ``loop.connect_accepted_socket`` with the server's
TLS context, the same path ``create_server`` takes (asyncio and uvloop alike).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import resource
import socket
import ssl
import struct
from collections.abc import Callable

import structlog

from edgefleet.gateway.admission import ConnectionGate
from edgefleet.gateway.config import Limits
from edgefleet.gateway.metrics import GatewayMetrics

__all__ = ["Acceptor", "connection_cap", "listen"]

log = structlog.get_logger("edgefleet.gateway")

#: File descriptors kept for everything but device connections (API watch, registry
#: connections, logs, the listening socket): a tenth of the limit, at least 256.
MIN_HEADROOM = 256
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def connection_cap(configured: int, nofile: int | None = None) -> int:
    """The most device connections one replica may hold: ``configured`` (0 = as many
    as the open-file limit allows), never more than that limit minus headroom."""
    if nofile is None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard and hard != resource.RLIM_INFINITY:
            with contextlib.suppress(ValueError, OSError):  # raise soft to hard if allowed
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                soft = hard
        nofile = soft if soft != resource.RLIM_INFINITY else 1 << 20
    allowed = max(16, nofile - max(MIN_HEADROOM, nofile // 10))
    if configured and configured > allowed:
        log.warning("max connections lowered to what the open-file limit allows",
                    configured=configured, allowed=allowed, nofile=nofile)  # fmt: skip
    return min(configured, allowed) if configured else allowed


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking listening TCP socket on the first address ``host`` resolves to."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _reset(conn: socket.socket) -> None:
    """Close with a TCP reset (no FIN/TIME_WAIT): the client learns at once."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _failure(exc: BaseException) -> str:
    """A bounded label for a failed handshake."""
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, ConnectionAbortedError) and "longer than" in str(exc)
    ):  # asyncio and uvloop abort a late handshake with ConnectionAbortedError
        return "Timeout"
    if isinstance(exc, ssl.SSLError):
        return "TlsError"
    return "ConnectionLost"


class Acceptor:
    """Accepts device connections on ``sock`` within :class:`Limits` (see module doc)."""

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        context: ssl.SSLContext,
        limits: Limits,
        gate: ConnectionGate,
        metrics: GatewayMetrics,
    ) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self._factory = factory
        self._context = context
        self._timeout = limits.handshake_timeout
        self.max_handshakes = limits.max_handshakes
        self._gate = gate
        self._metrics = metrics
        self.handshaking = 0
        self._slot = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def close(self) -> None:
        """Stop accepting, close the listening socket, abandon handshakes under way."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        self.sock.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self.handshaking >= self.max_handshakes:  # backpressure: the kernel queues
                self._slot.clear()
                await self._slot.wait()
            try:
                conn, _addr = await loop.sock_accept(self.sock)
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRORS:  # out of descriptors: let some close
                    self._metrics.connections_refused.labels("ResourceExhausted").inc()
                    log.warning("accept failed; pausing", error=exc.strerror)
                    await asyncio.sleep(0.1)
                continue  # ECONNABORTED and the like: the client gave up first
            gate = self._gate
            if gate.closing or gate.open + self.handshaking >= gate.limit:
                gate.refused += 1
                self._metrics.connections_refused.labels("MaxConnections").inc()
                _reset(conn)
                continue
            self.handshaking += 1
            self._metrics.handshakes_in_flight.set(self.handshaking)
            task = loop.create_task(self._handshake(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handshake(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                self._factory, conn, ssl=self._context, ssl_handshake_timeout=self._timeout
            )
        except (OSError, TimeoutError, EOFError) as exc:  # ssl.SSLError is an OSError
            self._metrics.handshake_failures.labels(_failure(exc)).inc()
            conn.close()  # a no-op when the transport closed it already
        except BaseException:
            conn.close()
            raise
        finally:
            self.handshaking -= 1
            self._metrics.handshakes_in_flight.set(self.handshaking)
            self._slot.set()
