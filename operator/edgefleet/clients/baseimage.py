"""Multi-architecture base images from the cached Debian root filesystems.

Each rootfs tarball (:mod:`edgefleet.clients.rootfs`) becomes one byte-reproducible
layer (:func:`edgefleet.domain.oci.layer_from_tar`: sorted entries, numeric owners,
timestamps clamped to the rootfs's ``SOURCE_DATE_EPOCH``), a config with the platform,
``PATH`` and ``LANG``, and a manifest; :func:`push_base_index` pushes them and an OCI
image index over all architectures. The same rootfs gives the same digests on every
run, so a second push uploads nothing.

Every image builder stacks on these: :func:`platform_base` reads one platform's base
manifest and config from the index, :func:`copy_base_layers` gives the target repository
its layers (nothing when present, a cross-repository mount, else a copy).

Compressing a ~100 MB rootfs takes a while, so the layer is cached beside its tarball
(``<key>.layer.tar.gz`` plus its diff ID), written atomically.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgefleet.clients import rootfs
from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import oci

__all__ = [
    "BASE_ENV",
    "BaseImage",
    "base_image",
    "copy_base_layers",
    "platform_base",
    "push_base_index",
]

BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
_LAYER_CACHE_VERSION = 1

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BaseImage:
    """One platform's base image: its layer, config and manifest blobs."""

    platform: oci.Platform
    layer: oci.Layer
    config: oci.Blob
    manifest: oci.Blob


def _cached_layer(fs: rootfs.Rootfs, say: Progress) -> oci.Layer:
    blob_path = fs.path.with_name(f"{fs.spec.key}.layer.tar.gz")
    meta_path = fs.path.with_name(f"{fs.spec.key}.layer.json")
    if blob_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == _LAYER_CACHE_VERSION:
            blob = oci.Blob(blob_path.read_bytes(), oci.OCI_LAYER_GZIP)
            if blob.digest == meta["digest"]:
                return oci.Layer(blob, meta["diff_id"], int(meta["uncompressed_size"]))
    start = time.monotonic()
    layer = oci.layer_from_tar(fs.path, clamp_mtime=rootfs.SOURCE_DATE_EPOCH)
    say(
        f"base {fs.spec.key}: layer {layer.blob.digest[:19]}… "
        f"{layer.blob.size / 1e6:.1f} MB gzip ({layer.uncompressed_size / 1e6:.1f} MB tar) "
        f"in {time.monotonic() - start:.1f}s"
    )
    pid = os.getpid()
    tmp_blob = blob_path.with_name(f".{blob_path.name}.{pid}.tmp")
    tmp_meta = meta_path.with_name(f".{meta_path.name}.{pid}.tmp")
    tmp_blob.write_bytes(layer.blob.data)
    tmp_meta.write_text(
        json.dumps(
            {
                "version": _LAYER_CACHE_VERSION,
                "digest": layer.blob.digest,
                "diff_id": layer.diff_id,
                "uncompressed_size": layer.uncompressed_size,
            }
        )
    )
    tmp_blob.replace(blob_path)
    tmp_meta.replace(meta_path)
    return layer


def base_image(fs: rootfs.Rootfs, progress: Progress | None = None) -> BaseImage:
    """The base image of one cached rootfs (the layer is cached next to it)."""
    say = progress or (lambda _msg: None)
    platform = oci.Platform.parse(fs.spec.platform)
    layer = _cached_layer(fs, say)
    config = oci.image_config(
        platform,
        [layer.diff_id],
        cmd=["/bin/sh"],
        env=BASE_ENV,
        labels={"io.edgefleet.rootfs": fs.spec.key},
        history=[
            f"mmdebstrap --variant=essential {fs.spec.suite} "
            f"--include={','.join(sorted(set(fs.spec.packages)))}"
        ],
    )
    manifest = oci.image_manifest(config, [layer])
    return BaseImage(platform, layer, config, manifest)


def push_base_index(
    registry_client: RegistryClient,
    repo: str,
    arches: Sequence[str],
    *,
    tag: str | None = None,
    suite: str = rootfs.DEFAULT_SUITE,
    packages: Sequence[str] = rootfs.DEFAULT_PACKAGES,
    cache: Path | None = None,
    progress: Progress | None = None,
) -> str:
    """Push a base image for each Debian architecture and their index; return its digest.

    Root filesystems missing from the cache are built first (minutes for a foreign
    architecture). The index is pushed by digest, and also under ``tag`` if given.
    """
    if not arches:
        raise ValueError("push_base_index needs at least one architecture")
    say = progress or (lambda _msg: None)
    entries: list[tuple[oci.Descriptor, oci.Platform]] = []
    for arch in arches:
        spec = rootfs.RootfsSpec(arch=arch, suite=suite, packages=tuple(packages))
        image = base_image(rootfs.ensure_rootfs(spec, cache=cache, progress=say), say)
        start = time.monotonic()
        for blob in (image.layer.blob, image.config):
            registry_client.push_blob(repo, blob)
        registry_client.put_manifest(repo, image.manifest.digest, image.manifest)
        say(
            f"base {spec.key}: pushed {repo}@{image.manifest.digest} "
            f"({image.platform}) in {time.monotonic() - start:.1f}s"
        )
        entries.append((image.manifest.descriptor(), image.platform))
    index = oci.image_index(entries)
    registry_client.put_manifest(repo, index.digest, index)
    if tag is not None:
        registry_client.put_manifest(repo, tag, index)
    say(f"base index {repo}@{index.digest} ({', '.join(str(p) for _, p in entries)})")
    return index.digest


def platform_base(
    registry_client: RegistryClient, base_repo: str, index: oci.ImageIndex, platform: str
) -> tuple[oci.ImageManifest, oci.ImageConfig]:
    """The base image of ``platform`` in ``index``: its manifest and config, digests checked."""
    desc = index.find(oci.Platform.parse(platform))
    data, media_type, _ = registry_client.get_manifest(base_repo, desc.digest)
    manifest = oci.parse_manifest(data, media_type, expected_digest=desc.digest)
    config = oci.parse_config(
        registry_client.get_blob(base_repo, manifest.config.digest),
        expected_digest=manifest.config.digest,
    )
    return manifest, config


def copy_base_layers(
    registry_client: RegistryClient,
    base_repo: str,
    repo: str,
    layers: Sequence[oci.Descriptor],
) -> None:
    """Give ``repo`` each base layer: nothing if present, a mount, else a copy."""
    for desc in layers:
        if registry_client.has_blob(repo, desc.digest):
            continue
        if registry_client.mount_blob(repo, desc.digest, base_repo):
            continue
        data = registry_client.get_blob(base_repo, desc.digest)
        registry_client.push_blob(repo, oci.Blob(data, desc.media_type))
