"""The simulated devices' HTTP: a minimal HTTP/1.1 client over asyncio streams, one
keep-alive TLS connection per device (requests serialised by a lock), so a device
costs one socket and a few KB. Not a general client: it sends JSON bodies with a
``Content-Length``, reads ``Content-Length`` responses (no chunked encoding) and
reconnects after ``Connection: close`` or any failure.
Used by :class:`~edgefleet.testing.simdevice.SimDevice` and the gateway tests.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Any

__all__ = ["Connection", "HttpResult"]


@dataclass(frozen=True)
class HttpResult:
    """One response: status, headers (names lower-cased) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def reason(self) -> str | None:
        try:
            return str(self.json().get("error"))
        except (ValueError, AttributeError):
            return None


class Connection:
    """One HTTP/1.1 keep-alive connection (requests are serialised by a lock)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.host, self.port, self.context = host, port, context
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.context, server_hostname=self.host
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> HttpResult:
        async with self._lock:
            try:
                async with asyncio.timeout(timeout):
                    return await self._exchange(method, path, body, headers or {})
            except BaseException:
                self.close()
                raise

    async def _exchange(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> HttpResult:
        if self._writer is None:
            await self._open()
        assert self._reader is not None
        assert self._writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionResetError("the gateway closed the connection")
        status = int(status_line.split()[1])
        got: dict[str, str] = {}
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            got[name.strip().lower()] = value.strip()
        length = int(got.get("content-length", "0"))
        data = await self._reader.readexactly(length) if length else b""
        if got.get("connection", "").lower() == "close":
            self.close()
        return HttpResult(status, got, data)
