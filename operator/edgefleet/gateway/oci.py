"""The OCI distribution API of the gateway: ``/v2/`` proxied to the registry, per device.

Routes (:meth:`OciProxy.routes`; the gateway mounts them behind its client-certificate
check): ``GET``/``HEAD`` ``/v2/``, ``/v2/<repo>/manifests/<digest>`` (and the cosign
tag ``sha256-<hex>.sig`` of an allowed digest), ``/v2/<repo>/blobs/<digest>`` with
``Range`` (``206`` and ``Content-Range`` as the registry answers). A device sees only
what :class:`~edgefleet.gateway.oci_reach.Reachability` computes from the images
assigned to it (``authorise(request)`` names them); everything else is ``404`` with the
registry's error body, the same bytes as for a digest nobody has, so nothing reveals
what exists for others. Manifests come from the cache; blobs stream from the registry
chunk by chunk with back-pressure, never whole in memory. Because this is the standard
API, ``docker pull`` and containerd with the device's certificate in ``certs.d`` work.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import structlog
from aiohttp import web

from edgefleet.clients.registry_errors import RegistryError
from edgefleet.clients.registry_stream import Manifest, RegistryReader
from edgefleet.gateway.metrics import GatewayMetrics
from edgefleet.gateway.oci_reach import Assignment, Reachability

__all__ = ["API_VERSION_HEADER", "Authorise", "ByteCounter", "OciProxy", "metered"]

log = structlog.get_logger("edgefleet.gateway.oci")

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
Authorise = Callable[[web.Request], Awaitable[Sequence[Assignment]]]
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_SIG_TAG = re.compile(r"sha256-([0-9a-f]{64})\.sig")
_RANGE = re.compile(r"bytes=(\d+-\d*|-\d+)")
_REPO = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)


class ByteCounter:
    """Bytes proxied, for when the gateway's Prometheus counter is not wired in."""

    def __init__(self) -> None:
        self.total = 0

    def __call__(self, amount: float) -> None:
        self.total += int(amount)


def metered(
    reader: RegistryReader,
    authorise: Authorise,
    metrics: GatewayMetrics,
    *,
    stall_timeout: float = 60.0,
) -> OciProxy:
    """The proxy as the gateway serves it: bytes and stalls counted on its Prometheus
    metrics (``edgefleet_gateway_proxied_bytes_total``, ``…_oci_stalls_total``)."""
    return OciProxy(
        reader,
        authorise,
        on_bytes=metrics.bytes_proxied.inc,
        stall_timeout=stall_timeout,
        on_stall=metrics.oci_stalls.inc,
    )


def _error(request: web.Request, status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]})
    headers = dict(API_VERSION_HEADER)
    if status == 503:
        headers["Retry-After"] = "5"
    return web.Response(
        status=status, body=body.encode(), content_type="application/json", headers=headers
    )


def _unknown_manifest(request: web.Request) -> web.Response:
    return _error(request, 404, "MANIFEST_UNKNOWN", "manifest unknown")


def _unknown_blob(request: web.Request) -> web.Response:
    return _error(request, 404, "BLOB_UNKNOWN", "blob unknown to registry")


def _unavailable(request: web.Request) -> web.Response:
    return _error(request, 503, "UNAVAILABLE", "the registry is unavailable; retry later")


class OciProxy:
    """The ``/v2/`` handlers, bound to one registry and the gateway's authoriser.

    ``authorise(request)`` returns the images the requesting device may pull (raising
    the gateway's own error for an unknown or locked-out device); ``on_bytes`` is told
    every chunk streamed (``GatewayMetrics.bytes_proxied.inc``). A device that stops
    reading for ``stall_timeout`` seconds loses the connection (slow retrieval must not
    hold a registry connection and the gateway's buffers forever; ``on_stall(1)`` is
    told); it resumes with ``Range``.
    """

    def __init__(
        self,
        reader: RegistryReader,
        authorise: Authorise,
        *,
        on_bytes: Callable[[float], None] | None = None,
        reach: Reachability | None = None,
        stall_timeout: float = 60.0,
        on_stall: Callable[[float], None] | None = None,
    ) -> None:
        self.reader = reader
        self.reach = reach or Reachability(reader.manifest)
        self._authorise = authorise
        self._on_bytes = on_bytes or ByteCounter()
        self._stall = stall_timeout
        self._on_stall = on_stall or ByteCounter()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v2/", self.api_root),  # aiohttp answers HEAD through it too
            web.get("/v2/{name:.+}/manifests/{reference}", self.manifest),
            web.get("/v2/{name:.+}/blobs/{digest}", self.blob, allow_head=False),
            web.head("/v2/{name:.+}/blobs/{digest}", self.blob),
        ]

    async def api_root(self, request: web.Request) -> web.Response:
        await self._authorise(request)
        return web.json_response({}, headers=API_VERSION_HEADER)

    async def _allowed(self, request: web.Request, repo: str) -> frozenset[str]:
        assigned = await self._authorise(request)
        if _REPO.fullmatch(repo) is None:
            return frozenset()
        allowed = await self.reach.allowed(assigned)
        return allowed.get(repo, frozenset())

    async def manifest(self, request: web.Request) -> web.Response:
        repo, reference = request.match_info["name"], request.match_info["reference"]
        digests = await self._allowed(request, repo)
        found: Manifest | None = None
        try:
            if _DIGEST.fullmatch(reference) and reference in digests:
                found = await self.reach.manifest(repo, reference)
            elif (sig := _SIG_TAG.fullmatch(reference)) and f"sha256:{sig[1]}" in digests:
                found = await self.reach.signature(repo, f"sha256:{sig[1]}")
        except RegistryError as exc:
            log.warning("registry failed", repository=repo, reference=reference, error=str(exc))
            return _unavailable(request)
        if found is None:
            return _unknown_manifest(request)
        return web.Response(
            body=found.body,
            headers={
                **API_VERSION_HEADER,
                "Content-Type": found.media_type or "application/vnd.oci.image.manifest.v1+json",
                "Docker-Content-Digest": found.digest,
            },
        )

    async def blob(self, request: web.Request) -> web.StreamResponse:
        repo, digest = request.match_info["name"], request.match_info["digest"]
        if _DIGEST.fullmatch(digest) is None or digest not in await self._allowed(request, repo):
            return _unknown_blob(request)
        wanted = request.headers.get("Range")
        wanted = wanted if wanted and _RANGE.fullmatch(wanted.strip()) else None
        try:
            async with self.reader.open_blob(
                repo, digest, method=request.method, range_header=wanted
            ) as upstream:
                return await self._relay(request, upstream, digest)
        except RegistryError as exc:
            log.warning("registry failed", repository=repo, digest=digest, error=str(exc))
            return _unavailable(request)

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse, digest: str
    ) -> web.StreamResponse:
        status = upstream.status
        if status == 404:
            return _unknown_blob(request)
        if status == 416:
            headers = {"Content-Range": upstream.headers.get("content-range", "")}
            return web.Response(status=416, headers={**API_VERSION_HEADER, **headers})
        if status not in (200, 206):
            log.warning("registry answered a blob with an error", status=status, digest=digest)
            return _unavailable(request)
        response = web.StreamResponse(status=status)
        response.headers.update(API_VERSION_HEADER)
        response.headers["Content-Type"] = "application/octet-stream"
        response.headers["Docker-Content-Digest"] = digest
        response.headers["Accept-Ranges"] = "bytes"
        for name in ("Content-Range", "ETag"):
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        length = upstream.headers.get("content-length")
        if length is not None and length.isdigit():
            response.content_length = int(length)
        await response.prepare(request)
        if request.method == "HEAD":
            await response.write_eof()
            return response
        try:
            async for chunk in upstream.content.iter_any():
                try:
                    async with asyncio.timeout(self._stall):
                        await response.write(chunk)
                except TimeoutError:
                    log.warning("device stalled a blob download", digest=digest,
                                stall_seconds=self._stall)  # fmt: skip
                    if request.transport is not None:
                        request.transport.abort()
                    self._on_stall(1)
                    return response
                self._on_bytes(len(chunk))
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Headers are out: cut the connection; the client resumes with Range.
            log.warning("registry stream broke", digest=digest, error=type(exc).__name__)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
