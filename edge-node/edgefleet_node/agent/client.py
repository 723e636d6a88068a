"""HTTPS to the gateway with the standard library: mutual TLS, pinned CAs, timeouts.

Every request opens its own connection (the long-poll holds one at a time), so a
renewed certificate is used from the next request on without a restart
(:meth:`GatewayClient.reload`). The server is verified against the pinned gateway CA
bundle and its name (TLS >= 1.2). The ``Date`` header of each verified response feeds
the :class:`~edgefleet_node.agent.clock.Clock`.

When the device clock lies outside the gateway certificate's validity (a device that
booted without RTC into 1970, or far in the future), OpenSSL refuses the handshake.
The agent then retries once with OpenSSL's ``X509_V_FLAG_NO_CHECK_TIME``: the chain
must still lead to the pinned CA and the name must still match; only the time check is
left to the agent, which judges validity by gateway time (``docs/agent.md``, "Clock").
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import http.client
import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgefleet_node.agent.clock import Clock

__all__ = ["GatewayClient", "GatewayError", "Response", "UnreachableError"]

_NO_CHECK_TIME = 0x200000  # X509_V_FLAG_NO_CHECK_TIME (OpenSSL >= 1.1.0)
_MAX_BODY = 4 * 1024 * 1024
_NO_ROUTE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN})


class UnreachableError(Exception):
    """The gateway cannot be reached (connection, TLS or timeout): transient."""

    @property
    def no_answer(self) -> bool:
        """Nothing answered at all (refused, timed out, no route, name unknown), so
        this cannot be the gateway refusing our certificate."""
        return isinstance(
            self.__cause__, ConnectionRefusedError | TimeoutError | socket.gaierror
        ) or (isinstance(self.__cause__, OSError) and self.__cause__.errno in _NO_ROUTE)


class GatewayError(Exception):
    """The gateway answered with an error; ``status`` and its ``reason`` (CamelCase)."""

    def __init__(
        self, status: int, reason: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.retry_after = retry_after  # seconds, from Retry-After (429/503)


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


def _time_error(exc: ssl.SSLError) -> bool:
    text = str(exc)
    return "certificate has expired" in text or "certificate is not yet valid" in text


class GatewayClient:
    """Requests to one gateway. ``client_pem`` holds the key and certificate chain
    (``None`` for the unauthenticated enrol call)."""

    def __init__(
        self,
        url: str,
        ca_pem: Path | bytes | None,
        client_pem: Path | None,
        clock: Clock,
        *,
        timeout: float = 30.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError(f"the gateway URL {url!r} must be https://host[:port]")
        self.url = url
        self._host = parsed.hostname
        self._port = parsed.port or 443
        self._ca = ca_pem
        self._client = client_pem
        self._clock = clock
        self._timeout = timeout
        self._lock = threading.Lock()
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self._open: set[http.client.HTTPSConnection] = set()
        self.received = 0  # body bytes of whole requests (blob streams count their own)

    def _context(self, no_time: bool) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get(no_time)
            if ctx is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                if self._ca is None:
                    # Only for fetching the CA bundle, which is then checked against the
                    # pin in the bootstrap token (kubeadm discovery).
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                elif isinstance(self._ca, bytes):
                    ctx.load_verify_locations(cadata=self._ca.decode("ascii"))
                else:
                    ctx.load_verify_locations(cafile=str(self._ca))
                if no_time:
                    ctx.verify_flags |= _NO_CHECK_TIME
                if self._client is not None:
                    ctx.load_cert_chain(str(self._client))
                self._contexts[no_time] = ctx
            return ctx

    def reload(self, client_pem: Path | None = None, ca_pem: Path | bytes | None = None) -> None:
        """Use new credentials from the next request on."""
        with self._lock:
            if client_pem is not None:
                self._client = client_pem
            if ca_pem is not None:
                self._ca = ca_pem
            self._contexts.clear()

    def abort(self) -> None:
        """Break the request in flight (shutdown)."""
        for conn in list(self._open):
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def open(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
        """Send a request, return the connection and the response with its body unread
        (the caller closes the connection)."""
        hdrs = {"User-Agent": "edgefleet-node", **(headers or {})}
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        for no_time in (False, True):
            conn = http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=timeout or self._timeout,
                context=self._context(no_time),
            )
            self._open.add(conn)
            try:
                conn.request(method, path, body=body, headers=hdrs)
                response = conn.getresponse()
            except ssl.SSLCertVerificationError as exc:
                self.done(conn)
                if not no_time and self._ca is not None and _time_error(exc):
                    continue
                raise UnreachableError(f"TLS verification of the gateway failed: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                self.done(conn)
                raise UnreachableError(f"{method} {path}: {exc}") from exc
            self._observe_date(response, verified=self._ca is not None)
            return conn, response
        raise AssertionError("unreachable")  # pragma: no cover

    def done(self, conn: http.client.HTTPSConnection) -> None:
        """Close a connection :meth:`open` returned."""
        self._open.discard(conn)
        conn.close()

    def _observe_date(self, response: http.client.HTTPResponse, *, verified: bool) -> None:
        date = response.getheader("Date")
        if verified and date:
            try:
                moment = email.utils.parsedate_to_datetime(date)
            except (TypeError, ValueError):
                return
            self._clock.observe(moment.timestamp())

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        limit: int = _MAX_BODY,
    ) -> Response:
        """A whole request; error statuses (>= 400) raise :class:`GatewayError`."""
        conn, response = self.open(method, path, body, headers, timeout)
        try:
            length = response.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise GatewayError(response.status, "TooLarge", f"body of {length} bytes")
            data = response.read(limit + 1)
            if len(data) > limit:
                raise GatewayError(response.status, "TooLarge", f"body over {limit} bytes")
        except (OSError, http.client.HTTPException) as exc:
            raise UnreachableError(f"{method} {path}: {exc}") from exc
        finally:
            response.close()
            self.done(conn)
        self.received += len(data)
        if response.status >= 400:
            error = _error(response.status, data)
            retry = response.getheader("Retry-After") or ""
            if retry.isdigit():
                error.retry_after = min(float(retry), 3600.0)
            raise error
        headers_out = {k.lower(): v for k, v in response.getheaders()}
        return Response(response.status, headers_out, data)


def _error(status: int, data: bytes) -> GatewayError:
    reason, message = "HTTP" + str(status), data[:512].decode("utf-8", "replace")
    try:
        doc = json.loads(data)
        if isinstance(doc, dict):
            reason = str(doc.get("error") or reason)[:64]
            message = str(doc.get("message") or doc.get("errors") or message)[:512]
    except ValueError:
        pass
    return GatewayError(status, reason, message)
