"""A small asyncio Kubernetes client over httpx: get, list, watch, server-side apply.

The gateway serves thousands of devices from one event loop; the official client is
synchronous and heavy, so this is the lean subset it needs, authenticated the same
way: in-cluster (service-account token, re-read on every request so rotation works)
or a kubeconfig with a client certificate or token. TLS is always verified.
Errors carry the API server's ``Status`` reason and HTTP code (:class:`KubeError`).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import yaml

__all__ = ["KubeClient", "KubeError"]

_SA = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(Exception):
    """The API server refused a request (``code`` is the HTTP status)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


def _error(response: httpx.Response, body: bytes) -> KubeError:
    try:
        doc = json.loads(body)
        return KubeError(response.status_code, str(doc.get("reason")), str(doc.get("message")))
    except (ValueError, AttributeError):
        return KubeError(response.status_code, "Unknown", body[:200].decode(errors="replace"))


def _material(user: Mapping[str, Any], base: Path, key: str, tmp: Path) -> str | None:
    if user.get(f"{key}-data"):
        path = tmp / key
        path.write_bytes(base64.b64decode(user[f"{key}-data"]))
        path.chmod(0o600)
        return str(path)
    if user.get(key):
        return str((base / user[key]).resolve())
    return None


class KubeClient:
    """Async access to one API server; make one per process and pass it in."""

    def __init__(
        self,
        server: str,
        ssl_context: ssl.SSLContext,
        *,
        token_file: Path | None = None,
        token: str | None = None,
        max_connections: int = 32,
    ) -> None:
        self.server = server.rstrip("/")
        self._token_file = token_file
        self._token = token
        self._http = httpx.AsyncClient(
            base_url=self.server,
            verify=ssl_context,
            timeout=httpx.Timeout(30.0, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections),
        )

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> KubeClient:
        """In-cluster when a service account is mounted and no kubeconfig is named."""
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")
        if not kubeconfig and (_SA / "token").exists():
            host = os.environ["KUBERNETES_SERVICE_HOST"]
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            ctx = ssl.create_default_context(cafile=str(_SA / "ca.crt"))
            return cls(f"https://{host}:{port}", ctx, token_file=_SA / "token")
        path = Path(kubeconfig or Path.home() / ".kube" / "config")
        doc = yaml.safe_load(path.read_text())
        context_name = doc.get("current-context")
        context = next(c["context"] for c in doc["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == context["user"])
        with tempfile.TemporaryDirectory() as tmp:
            ca = _material(cluster, path.parent, "certificate-authority", Path(tmp))
            ctx = ssl.create_default_context(cafile=ca)
            cert = _material(user, path.parent, "client-certificate", Path(tmp))
            key = _material(user, path.parent, "client-key", Path(tmp))
            if cert and key:
                ctx.load_cert_chain(cert, key)
        return cls(cluster["server"], ctx, token=user.get("token"))

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", **(extra or {})}
        token = self._token
        if self._token_file is not None:
            token = self._token_file.read_text().strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = self._headers({"Content-Type": content_type} if body is not None else None)
        content = None if body is None else json.dumps(body).encode()
        response = await self._http.request(
            method, path, params=params, content=content, headers=headers
        )
        if response.status_code >= 400:
            raise _error(response, response.content)
        result: dict[str, Any] = response.json()
        return result

    async def get(self, path: str) -> dict[str, Any]:
        return await self.request("GET", path)

    async def list(self, path: str, **params: str) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def apply(
        self, path: str, body: Mapping[str, Any], *, manager: str, force: bool = True
    ) -> dict[str, Any]:
        """Server-side apply (``path`` may end in ``/status``)."""
        params = {"fieldManager": manager, "force": "true" if force else "false"}
        return await self.request(
            "PATCH", path, params=params, body=body, content_type="application/apply-patch+yaml"
        )

    async def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 240
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) from ``resource_version`` on, with
        bookmarks; ends when the server closes the stream (the caller re-watches)."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        timeout = httpx.Timeout(timeout_seconds + 30.0, connect=10.0)
        async with AsyncExitStack() as stack:
            response = await stack.enter_async_context(
                self._http.stream(
                    "GET", path, params=params, headers=self._headers(), timeout=timeout
                )
            )
            if response.status_code >= 400:
                raise _error(response, await response.aread())
            async for line in response.aiter_lines():
                if line.strip():
                    yield json.loads(line)

    async def aclose(self) -> None:
        await self._http.aclose()
