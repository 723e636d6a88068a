"""Manifest and tag operations of the registry client.

:class:`ManifestOps` is a mixin of :class:`~edgefleet.clients.registry.RegistryClient`:
push (``put_manifest``, ``ensure_manifest``), read (``get_manifest``, bounded and
digest-verified) and describe (``head_manifest``) manifests and indexes, and list a
repository's tags (following pagination). It uses the client's transport and counters;
blob transfers stay in :mod:`~edgefleet.clients.registry`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable

import httpx

from edgefleet.clients import registry_model, registry_transport
from edgefleet.clients.registry_errors import DigestMismatchError, RegistryError
from edgefleet.domain import oci

__all__ = ["DEFAULT_ACCEPT", "ManifestOps"]

DEFAULT_ACCEPT = (oci.OCI_MANIFEST, oci.OCI_INDEX, oci.DOCKER_MANIFEST, oci.DOCKER_MANIFEST_LIST)
_MAX_TAG_PAGES = 1000


def _media_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip()


class ManifestOps:
    """Manifest and tag methods; the class mixing it in provides transport and counters."""

    _transport: registry_transport.RegistryTransport
    _call: Callable[..., tuple[httpx.Response, bytes]]

    def _count(self, **increments: int) -> None:
        raise NotImplementedError

    def _check_reported(self, response: httpx.Response, digest: str, operation: str) -> None:
        reported = response.headers.get("docker-content-digest")
        if reported is not None and reported != digest:
            raise DigestMismatchError(
                f"registry reports digest {reported}, we sent {digest}", operation=operation
            )

    def put_manifest(self, repo: str, reference: str, blob: oci.Blob) -> str:
        """Push a manifest or index under a tag or its digest; return its digest."""
        operation = f"PUT manifest {repo}:{reference}"
        if ":" in registry_model.check_reference(reference) and reference != blob.digest:
            raise DigestMismatchError(f"manifest digest is {blob.digest}", operation=operation)
        response, _ = self._call(
            "PUT",
            registry_model.manifest_path(repo, reference),
            scopes=registry_model.scopes(repo, push=True),
            operation=operation,
            ok=(200, 201),
            content=blob.data,
            headers={"Content-Type": blob.media_type},
        )
        self._check_reported(response, blob.digest, operation)
        self._count(manifests_pushed=1, manifest_bytes_uploaded=blob.size)
        return blob.digest

    def ensure_manifest(self, repo: str, reference: str, blob: oci.Blob) -> None:
        """Push a manifest unless ``reference`` already names exactly these bytes."""
        current = self.head_manifest(repo, reference)
        if current is None or current.digest != blob.digest:
            self.put_manifest(repo, reference, blob)

    def get_manifest(
        self, repo: str, reference: str, accept: Iterable[str] = DEFAULT_ACCEPT
    ) -> tuple[bytes, str, str]:
        """``(bytes, media type, digest)`` of a manifest or index, digest-verified."""
        accepted = list(accept)
        operation = f"GET manifest {repo}:{reference}"
        response, body = self._call(
            "GET",
            registry_model.manifest_path(repo, reference),
            scopes=registry_model.scopes(repo),
            operation=operation,
            ok=(200,),
            limit=oci.MAX_MANIFEST_SIZE,
            headers={"Accept": ", ".join(accepted)},
        )
        self._count(bytes_downloaded=len(body))
        digest = sha256 = oci.sha256_digest(body)
        if ":" in reference:
            algorithm, _, expected = reference.partition(":")
            if hashlib.new(algorithm, body).hexdigest() != expected:
                raise DigestMismatchError("manifest does not match its digest", operation=operation)
            digest = reference
        reported = response.headers.get("docker-content-digest", "")
        if reported.startswith("sha256:") and reported != sha256:
            raise DigestMismatchError(
                f"registry reports {reported}, got {digest}", operation=operation
            )
        media_type = _media_type(response)
        if media_type not in accepted:
            try:
                body_type = json.loads(body).get("mediaType")
            except (ValueError, AttributeError):
                body_type = None
            if body_type not in accepted:
                raise RegistryError(
                    f"registry returned media type {media_type or body_type!r}, not in {accepted}",
                    operation=operation,
                )
            media_type = body_type
        return body, media_type, digest

    def head_manifest(
        self, repo: str, reference: str, accept: Iterable[str] = DEFAULT_ACCEPT
    ) -> oci.Descriptor | None:
        """The descriptor of a manifest by tag or digest, or None if it does not exist."""
        response, _ = self._call(
            "HEAD",
            registry_model.manifest_path(repo, reference),
            scopes=registry_model.scopes(repo),
            operation=f"HEAD manifest {repo}:{reference}",
            ok=(200, 404),
            headers={"Accept": ", ".join(accept)},
        )
        if response.status_code == 404:
            return None
        digest = response.headers.get("docker-content-digest") or reference
        size = response.headers.get("content-length", "")
        try:
            return oci.Descriptor(_media_type(response), oci.check_digest(digest), int(size))
        except (oci.OCIError, ValueError) as exc:
            raise RegistryError(
                f"registry did not describe the manifest: {exc}", operation=f"HEAD {reference}"
            ) from exc

    def list_tags(self, repo: str) -> list[str]:
        """All tags of ``repo`` (following pagination)."""
        tags: list[str] = []
        url: httpx.URL | str = f"v2/{registry_model.check_repo(repo)}/tags/list"
        for _ in range(_MAX_TAG_PAGES):
            response, body = self._call(
                "GET",
                url,
                scopes=registry_model.scopes(repo),
                operation=f"list tags {repo}",
                ok=(200,),
                limit=oci.MAX_MANIFEST_SIZE,
            )
            try:
                page = json.loads(body).get("tags") or []
            except (ValueError, AttributeError) as exc:
                raise RegistryError("tag list is not JSON", operation=f"list tags {repo}") from exc
            tags += [t for t in page if isinstance(t, str)]
            next_link = response.links.get("next", {}).get("url")
            if not next_link:
                return tags
            url = self._transport.url(next_link)
        raise RegistryError("tag list has too many pages", operation=f"list tags {repo}")
