"""A TCP relay on 127.0.0.1 that can hold a transfer still at a chosen point.

Tests put it between an agent and the gateway (TLS passes through untouched) when
something must happen *during* a download: ``hold_after(n)`` lets ``n`` more bytes
flow from the server to the client and then blocks that direction until
``release()``. What the client has received by then is fixed, so the test acts on a
known state instead of racing the transfer.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

__all__ = ["TcpGate"]

_CHUNK = 64 * 1024


class TcpGate:
    """Relays every connection made to :attr:`port` to ``127.0.0.1:upstream``."""

    def __init__(self, upstream: int) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._cond = threading.Condition()
        self._budget: int | None = None  # bytes server→client still allowed; None: no limit
        self._closed = False
        self._socks: list[socket.socket] = [self._listener]
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def held(self) -> bool:
        """True while the server→client direction is blocked on an exhausted budget."""
        with self._cond:
            return self._budget == 0

    def hold_after(self, nbytes: int) -> None:
        with self._cond:
            self._budget = nbytes
            self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._budget = None
            self._cond.notify_all()

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self._upstream))
            except OSError:
                client.close()
                continue
            with self._cond:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._socks += [client, server]
            self._spawn(self._pump, client, server, False)
            self._spawn(self._pump, server, client, True)

    def _allow(self, want: int) -> int:
        """How many of ``want`` server bytes may pass now; waits while held."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._budget != 0)
            if self._closed:
                return 0
            if self._budget is None:
                return want
            n = min(want, self._budget)
            self._budget -= n
            return n

    def _pump(self, src: socket.socket, dst: socket.socket, metered: bool) -> None:
        try:
            while data := src.recv(_CHUNK):
                view = memoryview(data)
                while view:
                    n = self._allow(len(view)) if metered else len(view)
                    if n == 0:
                        return
                    dst.sendall(view[:n])
                    view = view[n:]
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> TcpGate:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
