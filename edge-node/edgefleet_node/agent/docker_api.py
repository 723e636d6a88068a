"""A small Docker Engine API client over the engine's unix socket, standard library only.

Only what :mod:`~edgefleet_node.agent.docker_runtime` needs: ping/version, image
load (a streamed, chunked tar upload), image inspect/tag/list/remove, container
create/start/inspect/logs/update/stop/remove/list. It replaces the ``docker`` SDK
(and its ``requests``/``urllib3`` closure), which cost the idle agent ~9 MB of RSS.

The engine is found like the docker CLI finds it: ``DOCKER_HOST=unix:///path`` or the
default ``/var/run/docker.sock``. Podman's Docker-compatible socket works the same way
(``DOCKER_HOST=unix:///run/podman/podman.sock``). Only unix sockets are supported: the
agent drives the engine on its own device, never one across a network.

Paths are prefixed with the API version: 1.41 (Docker 20.10, Podman 4's compat API),
or the engine's own when it is older.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DEFAULT_SOCKET", "DockerAPI", "DockerAPIError", "NotFoundError", "socket_path"]

DEFAULT_SOCKET = "/var/run/docker.sock"
_API_VERSION = (1, 41)
_MAX_JSON = 64 * 1024 * 1024  # an inspect or list answer; never unbounded
_MAX_LOGS = 64 * 1024


class DockerAPIError(Exception):
    """The engine answered with an error status (or a load reported an error)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.explanation = message


class NotFoundError(DockerAPIError):
    """404: no such image or container."""


def socket_path(env: Mapping[str, str] | None = None) -> str:
    """The engine's unix socket from ``DOCKER_HOST`` (``unix://`` only) or the default."""
    host = (env if env is not None else os.environ).get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    scheme, _, path = host.partition("://")
    if scheme != "unix" or not path.startswith("/"):
        raise ValueError(f"DOCKER_HOST={host!r}: only unix:///absolute/path sockets are supported")
    return path


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


class DockerAPI:
    """One engine; a new connection per request (thread-safe, nothing held idle)."""

    def __init__(self, path: str | None = None, *, timeout: float = 120.0) -> None:
        self.path = path or socket_path()
        self.timeout = timeout
        self._prefix = ""
        self.version_info: dict[str, Any] = self.request_json("GET", "/version")
        engine = _version_tuple(str(self.version_info.get("ApiVersion") or "1.41"))
        major, minor = min(engine, _API_VERSION)
        self._prefix = f"/v{major}.{minor}"

    # -- plumbing ----------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[_UnixConnection, http.client.HTTPResponse]:
        url = self._prefix + path
        if query:
            url += "?" + urllib.parse.urlencode(
                {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in query.items()}
            )
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.request(method, url, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        if response.status >= 400:
            try:
                raw = response.read(_MAX_LOGS)
            finally:
                conn.close()
            try:
                message = str(json.loads(raw).get("message") or raw.decode("utf-8", "replace"))
            except (ValueError, AttributeError):
                message = raw.decode("utf-8", "replace")
            error = NotFoundError if response.status == 404 else DockerAPIError
            raise error(response.status, f"{response.status}: {message.strip()}")
        return conn, response

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int = _MAX_JSON,
    ) -> bytes:
        conn, response = self._send(method, path, query, body, headers)
        try:
            data = response.read(limit + 1)
        finally:
            conn.close()
        if len(data) > limit:
            raise DockerAPIError(response.status, f"{method} {path}: answer over {limit} bytes")
        return data

    def request_json(
        self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None
    ) -> Any:
        payload = None if body is None else json.dumps(body).encode()
        headers = {} if payload is None else {"Content-Type": "application/json"}
        data = self.request(method, path, query, payload, headers)
        return json.loads(data) if data.strip() else None

    # -- the endpoints -----------------------------------------------------------------
    def ping(self) -> None:
        self.request("GET", "/_ping", limit=64)

    def load(self, archive: Iterable[bytes]) -> list[dict[str, Any]]:
        """``docker load`` from a streamed tar (chunked upload); the engine's messages.
        A message carrying ``error`` raises."""
        conn, response = self._send(
            "POST", "/images/load", {"quiet": "1"}, archive, {"Content-Type": "application/x-tar"}
        )
        try:
            raw = response.read(_MAX_LOGS + 1)
        finally:
            conn.close()
        messages = []
        decoder = json.JSONDecoder()
        text, pos = raw.decode("utf-8", "replace"), 0
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                message, pos = decoder.raw_decode(text, pos)
            except ValueError:
                break  # a truncated tail: what was parsed is what we judge
            if isinstance(message, dict):
                messages.append(message)
        for message in messages:
            if message.get("error") or message.get("errorDetail"):
                detail = message.get("errorDetail") or {}
                raise DockerAPIError(500, str(message.get("error") or detail.get("message")))
        return messages

    def image(self, reference: str) -> dict[str, Any]:
        found: dict[str, Any] = self.request_json(
            "GET", f"/images/{urllib.parse.quote(reference, safe='')}/json"
        )
        return found

    def tag(self, reference: str, repository: str, tag: str) -> None:
        quoted = urllib.parse.quote(reference, safe="")
        self.request("POST", f"/images/{quoted}/tag", {"repo": repository, "tag": tag})

    def images(self, reference: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.request_json(
            "GET", "/images/json", {"filters": {"reference": [reference]}}
        )
        return found or []

    def remove_image(self, reference: str) -> None:
        self.request("DELETE", f"/images/{urllib.parse.quote(reference, safe='')}")

    def create(self, name: str, spec: Mapping[str, Any]) -> str:
        created = self.request_json("POST", "/containers/create", {"name": name}, dict(spec))
        return str(created["Id"])

    def start(self, container: str) -> None:
        self.request("POST", f"/containers/{container}/start")

    def inspect(self, container: str) -> dict[str, Any]:
        found: dict[str, Any] = self.request_json("GET", f"/containers/{container}/json")
        return found

    def logs(self, container: str, tail: int) -> bytes:
        """stdout and stderr, demultiplexed (containers run without a TTY)."""
        raw = self.request(
            "GET",
            f"/containers/{container}/logs",
            {"stdout": "1", "stderr": "1", "tail": tail},
            limit=_MAX_LOGS,
        )
        out, pos = bytearray(), 0
        while pos + 8 <= len(raw) and raw[pos] in (0, 1, 2) and raw[pos + 1 : pos + 4] == b"\0\0\0":
            size = int.from_bytes(raw[pos + 4 : pos + 8], "big")
            out += raw[pos + 8 : pos + 8 + size]
            pos += 8 + size
        return bytes(out) if pos else raw  # an engine that did not frame them

    def update(self, container: str, changes: Mapping[str, Any]) -> None:
        self.request_json("POST", f"/containers/{container}/update", body=dict(changes))

    def stop(self, container: str, timeout: int) -> None:
        self.request("POST", f"/containers/{container}/stop", {"t": timeout})

    def remove(self, container: str) -> None:
        self.request("DELETE", f"/containers/{container}", {"force": "1"})

    def containers(self, label: str) -> list[dict[str, Any]]:
        """All containers (running or not) carrying ``label``; the list entries
        (``Id``, ``State``, ``Labels``, ``ImageID``)."""
        found: list[dict[str, Any]] = self.request_json(
            "GET", "/containers/json", {"all": "1", "filters": {"label": [label]}}
        )
        return found or []
