"""Builds, pushes and signs the bundled registry's multi-arch image without a daemon.

For each platform: download the locked ``docker-registry`` ``.deb`` from the Debian
mirror (cached by sha256, every byte checked against
:mod:`edgefleet.domain.registryimage`'s lock), take its files into one layer, stack it
on the platform's image from the base index in the target registry, push what the
registry lacks, push and sign the manifest; then the index, signed and tagged with the
package's version. Same inputs, same digests (``edgefleet image build-registry``).
"""

from __future__ import annotations

import importlib.resources
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.clients import baseimage, signer
from edgefleet.clients.appbuilder import (
    AppBuildError,
    AppBuildResult,
    PlatformBuild,
    publish_index,
)
from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import oci, registryimage

__all__ = ["DEFAULT_MIRROR", "build_registry_image", "fetch_deb", "load_lock"]

DEFAULT_MIRROR = "https://deb.debian.org/debian"
Progress = Callable[[str], None]


def load_lock() -> registryimage.RegistryLock:
    text = importlib.resources.files("edgefleet.domain").joinpath(registryimage.LOCK_FILE)
    return registryimage.parse_lock(text.read_text())


def fetch_deb(locked: registryimage.LockedDeb, cache_dir: Path, mirror: str) -> bytes:
    """The locked ``.deb``'s bytes: from the cache, else downloaded and checked first."""
    cached = cache_dir / f"{locked.sha256}.deb"
    if cached.is_file():
        data = cached.read_bytes()
        if oci.sha256_digest(data) == f"sha256:{locked.sha256}":
            return data
    url = f"{mirror.rstrip('/')}/{locked.path}"
    try:
        response = httpx.get(url, timeout=120, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise AppBuildError(f"cannot download {url}: {exc}") from exc
    data = response.content
    if len(data) != locked.size or oci.sha256_digest(data) != f"sha256:{locked.sha256}":
        raise AppBuildError(f"{url} does not match the lock (size or sha256)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(cached)
    return data


def build_registry_image(
    registry: RegistryClient,
    signing_key: ec.EllipticCurvePrivateKey,
    cache_dir: Path,
    *,
    repo: str = "edgefleet/registry",
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    tags: Sequence[str] | None = None,
    base_repository: str = "edgefleet/base",
    base_reference: str = "bookworm",
    mirror: str = DEFAULT_MIRROR,
    progress: Progress | None = None,
) -> AppBuildResult:
    """Build the registry image for ``platforms`` on the base index; return the result.

    The build counts its traffic on its own metered view of ``registry``
    (:meth:`RegistryClient.metered`), so builds sharing a client report their own bytes.
    """
    with registry.metered() as view:
        return _build(
            view,
            signing_key,
            cache_dir,
            repo=repo,
            platforms=platforms,
            tags=tags,
            base_repository=base_repository,
            base_reference=base_reference,
            mirror=mirror,
            progress=progress,
        )


def _build(
    registry: RegistryClient,
    signing_key: ec.EllipticCurvePrivateKey,
    cache_dir: Path,
    *,
    repo: str,
    platforms: Sequence[str],
    tags: Sequence[str] | None,
    base_repository: str,
    base_reference: str,
    mirror: str,
    progress: Progress | None,
) -> AppBuildResult:
    say = progress or (lambda m: print(m, file=sys.stderr))
    lock = load_lock()
    started = time.monotonic()
    data, media_type, _ = registry.get_manifest(base_repository, base_reference)
    index = oci.parse_index(data, media_type)
    entries: list[tuple[oci.Descriptor, oci.Platform]] = []
    builds = []
    for platform in sorted(platforms):
        try:
            locked = lock.deb(platform)
            files = registryimage.deb_members(fetch_deb(locked, cache_dir, mirror), locked)
        except registryimage.DebError as exc:
            raise AppBuildError(str(exc)) from exc
        layer = registryimage.registry_layer(files)
        base, base_config = baseimage.platform_base(registry, base_repository, index, platform)
        image = registryimage.assemble(base_config, list(base.layers), layer, lock.version)
        baseimage.copy_base_layers(registry, base_repository, repo, base.layers)
        for blob in (layer.blob, image.config):
            registry.push_blob(repo, blob)
        registry.ensure_manifest(repo, image.manifest.digest, image.manifest)
        signer.sign_and_push(registry, repo, image.manifest.digest, signing_key)
        size = sum(d.size for d in base.layers) + layer.blob.size
        say(f"edgefleet-registry {platform}: {repo}@{image.manifest.digest} ({size} bytes)")
        builds.append(PlatformBuild(platform, image.manifest.digest, size, 0, layer.blob.size))
        entries.append((image.manifest.descriptor(), image.platform))
    tags = [lock.version.replace("+", "_").replace("~", "_")] if tags is None else list(tags)
    return publish_index(
        registry,
        repo,
        signing_key,
        entries,
        builds,
        title="edgefleet-registry",
        version=lock.version,
        tags=tags,
        started=started,
        say=say,
    )
