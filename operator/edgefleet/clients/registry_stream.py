"""An async, read-only registry client for the gateway's ``/v2/`` proxy.

:class:`RegistryReader` fetches manifests (bounded, digest-checked) and opens blob
streams (``Range`` passed through) from the registry the operator pushes to, with the
operator's settings: base URL, CA bundle, Basic or Bearer credentials. The ``401``
challenge flow is :class:`~edgefleet.clients.registry_auth.Authenticator`'s (token
fetches are rare and cached, so they run in a thread). Blob bodies are never
buffered: :meth:`RegistryReader.open_blob` hands back the streaming response.

aiohttp, not httpx, carries the traffic: on this project's machine an aiohttp client
relayed a 100 MB blob about three times faster than httpx's async client (see
``docs/benchmarks.md``); a proxy's throughput is this loop.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
from yarl import URL

from edgefleet.clients import registry_auth
from edgefleet.clients.registry_errors import RegistryAuthError, RegistryError
from edgefleet_node.oci import types as oci_types

__all__ = ["MANIFEST_TYPES", "MAX_MANIFEST", "Manifest", "RegistryReader"]

MAX_MANIFEST = 4 * 1024 * 1024
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry served it: its digest, media type and exact bytes."""

    digest: str
    media_type: str
    body: bytes


class RegistryReader:
    """Reads manifests and streams blobs from one registry; one per gateway process.
    Make it anywhere; its HTTP session starts on first use inside the event loop."""

    def __init__(
        self,
        base_url: str,
        *,
        ca_bundle: str | Path | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
        max_connections: int = 64,
    ) -> None:
        self.base = URL(base_url.rstrip("/"))
        if self.base.scheme != "https" or not self.base.host:
            raise ValueError(f"registry URL {base_url!r} must be https://host[:port]")
        self._ssl = ssl.create_default_context(
            cafile=str(ca_bundle) if ca_bundle is not None else None
        )
        self._timeout = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # Token fetches go through a small synchronous client (rare, cached per scope).
        self._token_http = httpx.Client(verify=self._ssl, timeout=httpx.Timeout(30.0))
        self._auth = registry_auth.Authenticator(self._token_http, username, password)

    def __repr__(self) -> str:
        return f"RegistryReader({str(self.base)!r})"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._max_connections),
                timeout=self._timeout,
                auto_decompress=False,
                headers={"Accept-Encoding": "identity"},
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._token_http.close()

    @asynccontextmanager
    async def _send(
        self, method: str, path: str, repo: str, headers: dict[str, str], operation: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A streaming response, after answering at most one auth challenge. Redirects
        are followed; aiohttp drops ``Authorization`` when one leaves the origin."""
        scopes = [f"repository:{repo}:pull"]
        url = self.base.with_path(path, encoded=False)
        authorization = self._auth.header(scopes)
        for attempt in range(2):
            sent = dict(headers)
            if authorization:
                sent["Authorization"] = authorization
            try:
                response = await self._http().request(method, url, headers=sent)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise RegistryError(
                    f"{type(exc).__name__}: {exc}", code="TRANSPORT", operation=operation
                ) from exc
            try:
                if response.status == 401 and attempt == 1:
                    raise RegistryAuthError(
                        "the registry refused the configured credentials",
                        status=401,
                        operation=operation,
                    )
                if response.status == 401:
                    challenge = httpx.Response(
                        401,
                        headers={"www-authenticate": response.headers.get("www-authenticate", "")},
                    )
                    authorization = await asyncio.to_thread(
                        self._auth.handle, challenge, scopes, operation
                    )
                    continue
                yield response
                return
            finally:
                response.release()
        raise AssertionError("unreachable: the second attempt always yields or raises")

    async def manifest(self, repo: str, reference: str) -> Manifest | None:
        """The manifest ``reference`` (a digest, or a tag) of ``repo``; ``None`` when the
        registry does not have it. A manifest by digest must hash to that digest."""
        operation = f"GET manifest {repo}@{reference}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        async with self._send(
            "GET", f"/v2/{repo}/manifests/{reference}", repo, headers, operation
        ) as response:
            if response.status == 404:
                return None
            if response.status != 200:
                raise RegistryError(
                    "the registry refused", status=response.status, operation=operation
                )
            body = bytearray()
            try:
                async for chunk in response.content.iter_any():
                    body += chunk
                    if len(body) > MAX_MANIFEST:
                        raise RegistryError("manifest is too large", operation=operation)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise RegistryError(
                    f"{type(exc).__name__}: {exc}", code="TRANSPORT", operation=operation
                ) from exc
            media_type = response.headers.get("content-type", "").split(";")[0].strip()
        digest = oci_types.sha256_digest(bytes(body))
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"manifest digest is {digest}", operation=operation)
        return Manifest(digest, media_type, bytes(body))

    @asynccontextmanager
    async def open_blob(
        self, repo: str, digest: str, *, method: str = "GET", range_header: str | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The registry's streaming response for blob ``digest`` (any status: the
        caller maps them); released on exit."""
        headers = {"Range": range_header} if range_header else {}
        async with self._send(
            method, f"/v2/{repo}/blobs/{digest}", repo, headers, f"{method} blob {repo}@{digest}"
        ) as response:
            yield response
