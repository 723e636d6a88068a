"""The HTTP layer of the registry client: auth-aware calls with bounded bodies.

One :meth:`RegistryTransport.call` sends a request, retries it on transient failures
(429, 502, 503, 504, connection errors) with exponential backoff — except chunk
``PATCH``es, whose offsets make a blind retry unsafe — answers at most one 401 challenge
(through :class:`~edgefleet.clients.registry_auth.Authenticator`), reads the body up
to a limit and turns error responses and transport failures into typed
:class:`~edgefleet.clients.registry_errors.RegistryError` exceptions. Credentials go
only to the registry's own origin (and the token realm), never into messages.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import TypedDict, Unpack

import httpx

from edgefleet.clients import registry_auth
from edgefleet.clients.registry_errors import (
    BlobTooLargeError,
    RegistryError,
    error_from_response,
)
from edgefleet.clients.registry_model import Sink

__all__ = ["CallOptions", "RegistryTransport"]

_MAX_ERROR_BODY = 64 * 1024
_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
_BACKOFF_BASE, _BACKOFF_MAX = 0.5, 8.0


class _Required(TypedDict):
    scopes: Sequence[str]
    operation: str
    ok: Collection[int]


class CallOptions(_Required, total=False):
    """What one registry request needs besides its method and URL."""

    limit: int
    params: dict[str, str] | None
    content: bytes | Iterator[bytes] | None
    headers: dict[str, str] | None
    sink: Sink | None


def _stream(response: httpx.Response, sink: Sink, limit: int, operation: str) -> None:
    sink.reset()
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise BlobTooLargeError(f"response exceeds the {limit}-byte limit", operation=operation)
        sink.write(chunk)


def _transient(err: RegistryError) -> bool:
    return err.status in _TRANSIENT_STATUS or err.code == "TRANSPORT"


class RegistryTransport:
    """An httpx client bound to one registry base URL, with its authenticator."""

    def __init__(
        self,
        base_url: str,
        *,
        ca_bundle: str | Path | None = None,
        username: str | None = None,
        password: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._retries = retries
        self._sleep = sleep
        self.base = httpx.URL(base_url.rstrip("/") + "/")
        if self.base.scheme not in ("https", "http"):
            raise ValueError(f"registry URL {base_url!r} must be https://host[:port]")
        verify: ssl.SSLContext | bool = True
        if ca_bundle is not None:
            verify = ssl.create_default_context(cafile=str(ca_bundle))
        self._http = httpx.Client(verify=verify, transport=transport, timeout=timeout)
        self._auth = registry_auth.Authenticator(self._http, username, password)

    def __repr__(self) -> str:
        return f"RegistryTransport({str(self.base)!r})"

    def close(self) -> None:
        self._http.close()

    def url(self, path: httpx.URL | str) -> httpx.URL:
        """``path`` (relative, or a Location the registry sent) made absolute."""
        return self.base.join(path)

    def same_origin(self, url: httpx.URL) -> bool:
        base = self.base
        return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)

    def call(
        self, method: str, url: httpx.URL | str, **request: Unpack[CallOptions]
    ) -> tuple[httpx.Response, bytes]:
        """Send, retrying transient failures; return the response and its bounded body."""
        retries = 0 if method == "PATCH" else self._retries
        for attempt in range(retries + 1):
            try:
                return self._call_once(method, url, **request)
            except RegistryError as err:
                if attempt == retries or not _transient(err):
                    raise
                self._sleep(min(_BACKOFF_MAX, _BACKOFF_BASE * 2**attempt))
        raise AssertionError("unreachable: the last attempt always returns or raises")

    def _call_once(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        scopes: Sequence[str],
        operation: str,
        ok: Collection[int],
        limit: int = _MAX_ERROR_BODY,
        params: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
        sink: Sink | None = None,
    ) -> tuple[httpx.Response, bytes]:
        """Send (answering one auth challenge); return the response and its bounded body.

        With a ``sink``, a successful body streams into it (reset first, so a retried
        request starts it over) and the returned body is empty.
        """
        target = self.base.join(url)
        if params:  # merged, not replacing: upload Locations carry their own state
            target = target.copy_merge_params(params)
        headers = dict(headers or {})
        authorization = self._auth.header(scopes) if self.same_origin(target) else None
        for attempt in range(2):
            if authorization:
                headers["Authorization"] = authorization
            try:
                with self._http.stream(
                    method,
                    target,
                    headers=headers,
                    content=content,
                    follow_redirects=method in ("GET", "HEAD"),
                ) as response:
                    status = response.status_code
                    if status == 401 and attempt == 0 and self.same_origin(target):
                        authorization = self._auth.handle(response, scopes, operation)
                        continue
                    body_limit = limit if status in ok else _MAX_ERROR_BODY
                    body = bytearray()
                    if sink is not None and status in ok:
                        _stream(response, sink, limit, operation)
                        return response, b""
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > body_limit:
                            if status not in ok:
                                break
                            raise BlobTooLargeError(
                                f"response exceeds the {limit}-byte limit", operation=operation
                            )
            except httpx.HTTPError as exc:
                raise RegistryError(
                    f"{type(exc).__name__}: {exc}", code="TRANSPORT", operation=operation
                ) from exc
            if status not in ok:
                raise error_from_response(status, bytes(body[:_MAX_ERROR_BODY]), operation)
            return response, bytes(body)
        raise AssertionError("unreachable: the second attempt always returns or raises")
