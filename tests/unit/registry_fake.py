"""An in-memory OCI distribution API for unit tests, served through httpx.MockTransport.

Just enough of the spec for RegistryClient unit tests: blob HEAD/GET, uploads
(POST, PATCH chunks, PUT with ?digest=), cross-repo mounts, manifests by tag or digest,
tag lists, and optional Bearer or Basic auth. Integration tests use the real
registry (edgefleet.testing.registry) instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field

import httpx

__all__ = ["BASE", "FakeRegistry"]

BASE = "https://registry.test:5000"
_BLOB = re.compile(r"/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})")
_UPLOAD = re.compile(r"/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[0-9a-f]*)")
_MANIFEST = re.compile(r"/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)")
_TAGS = re.compile(r"/v2/(?P<repo>.+)/tags/list")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = {"errors": [{"code": code, "message": message}]}
    return httpx.Response(status, json=body, headers=headers)


@dataclass
class FakeRegistry:
    """State of the fake registry plus knobs to make it misbehave."""

    auth: str | None = None  # None, "bearer" or "basic"
    username: str = "alice"
    password: str = "s3cret-pw"
    blobs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    manifests: dict[str, dict[str, tuple[bytes, str]]] = field(default_factory=dict)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    token_requests: list[httpx.Request] = field(default_factory=list)
    lie_about_digest: bool = False  # report a wrong Docker-Content-Digest
    corrupt_downloads: bool = False  # serve wrong bytes for blobs and manifests

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _authorised(self, request: httpx.Request) -> bool:
        header = str(request.headers.get("authorization", ""))
        if self.auth == "bearer":
            return header == "Bearer tok-123"
        if self.auth == "basic":
            raw = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return header == f"Basic {raw}"
        return True

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        raw = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {raw}":
            return httpx.Response(401)
        return httpx.Response(200, json={"token": "tok-123", "expires_in": 300})

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return self._token(request)
        self.requests.append(request)
        if not self._authorised(request):
            if self.auth == "bearer":
                challenge = (
                    'Bearer realm="https://registry.test:5000/token",service="registry.test"'
                )
            else:
                challenge = 'Basic realm="registry"'
            return _error(
                401, "UNAUTHORIZED", "authentication required", **{"www-authenticate": challenge}
            )
        path = request.url.path
        for pattern, handler in (
            (_UPLOAD, self._upload),
            (_BLOB, self._blob),
            (_MANIFEST, self._manifest),
            (_TAGS, self._tags),
        ):
            match = pattern.fullmatch(path)
            if match:
                return handler(request, **match.groupdict())
        return _error(404, "NOT_FOUND", f"no route {path}")

    def _blob(self, request: httpx.Request, repo: str, digest: str) -> httpx.Response:
        data = self.blobs.get(repo, {}).get(digest)
        if data is None:
            return _error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        if self.corrupt_downloads:
            data = data + b"!"
        headers = {"docker-content-digest": digest, "content-length": str(len(data))}
        content = b"" if request.method == "HEAD" else data
        return httpx.Response(200, content=content, headers=headers)

    def _upload(self, request: httpx.Request, repo: str, id: str) -> httpx.Response:
        if request.method == "POST":
            mount, source = request.url.params.get("mount"), request.url.params.get("from")
            if mount and source and mount in self.blobs.get(source, {}):
                self.blobs.setdefault(repo, {})[mount] = self.blobs[source][mount]
                return httpx.Response(201, headers={"docker-content-digest": mount})
            upload_id = uuid.uuid4().hex
            self.uploads[upload_id] = bytearray()
            location = f"/v2/{repo}/blobs/uploads/{upload_id}?_state=abc"
            return httpx.Response(202, headers={"location": location})
        if request.url.params.get("_state") != "abc" or id not in self.uploads:
            return _error(404, "BLOB_UPLOAD_INVALID", "blob upload invalid")
        if request.method == "DELETE":
            del self.uploads[id]
            return httpx.Response(204)
        buffer = self.uploads[id]
        if request.method == "PATCH":
            start, _, end = request.headers["content-range"].partition("-")
            if int(start) != len(buffer) or int(end) != len(buffer) + len(request.content) - 1:
                return _error(416, "BLOB_UPLOAD_INVALID", "bad range")
            buffer += request.content
            location = f"/v2/{repo}/blobs/uploads/{id}?_state=abc"
            return httpx.Response(202, headers={"location": location})
        buffer += request.content
        digest = request.url.params["digest"]
        if _digest(bytes(buffer)) != digest:
            return _error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        self.blobs.setdefault(repo, {})[digest] = bytes(buffer)
        del self.uploads[id]
        reported = _digest(b"lie") if self.lie_about_digest else digest
        return httpx.Response(201, headers={"docker-content-digest": reported})

    def _manifest(self, request: httpx.Request, repo: str, ref: str) -> httpx.Response:
        store = self.manifests.setdefault(repo, {})
        if request.method == "PUT":
            digest = _digest(request.content)
            entry = (request.content, request.headers["content-type"])
            store[digest] = entry
            store[ref] = entry
            reported = _digest(b"lie") if self.lie_about_digest else digest
            return httpx.Response(201, headers={"docker-content-digest": reported})
        if ref not in store:
            return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        data, media_type = store[ref]
        headers = {"content-type": media_type, "docker-content-digest": _digest(data)}
        if self.corrupt_downloads:
            data = data.replace(b"}", b" }", 1)
        content = b"" if request.method == "HEAD" else data
        headers["content-length"] = str(len(data))
        return httpx.Response(200, content=content, headers=headers)

    def _tags(self, request: httpx.Request, repo: str) -> httpx.Response:
        tags = sorted(t for t in self.manifests.get(repo, {}) if not t.startswith("sha256:"))
        last = request.url.params.get("last")
        if last:
            tags = [t for t in tags if t > last]
        page, rest = tags[:2], tags[2:]
        headers = {}
        if rest:
            headers["link"] = f'</v2/{repo}/tags/list?n=2&last={page[-1]}>; rel="next"'
        return httpx.Response(
            200, content=json.dumps({"name": repo, "tags": page}), headers=headers
        )
