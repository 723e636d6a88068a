"""Workload images in the Docker engine: load verified blobs, tag, clean up.

The image half of :class:`~edgefleet_node.agent.docker_runtime.DockerRuntime`, as
functions taking the engine client. :func:`load` streams a ``docker load`` archive
built from the agent's verified blobs (:mod:`~edgefleet_node.agent.docker_archive`)
and checks that the engine's image ID is the config digest the signed manifest names
and that its platform is the device's. The image is tagged
``edgefleet/workload:sha256-<manifest hex>`` so :func:`remove_unused` knows which
manifest it belongs to (the tag is never pulled; containers run by image ID).

Layers the engine already holds under our other images (the previous version's base
and runtime) are left out of the archive (Docker only; Podman's load reads every
file); should the engine refuse that archive, the whole one is sent once more.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Mapping
from typing import Any

from edgefleet_node.agent import docker_archive
from edgefleet_node.agent import log as agent_log
from edgefleet_node.agent.docker_api import DockerAPI, DockerAPIError, NotFoundError
from edgefleet_node.agent.docker_spec import image_tag, our_manifest, repository, tags
from edgefleet_node.agent.runtime import RuntimeFailure, VerifiedImage
from edgefleet_node.protocol.desired import Workload

__all__ = ["check_platform", "find", "load", "remove_unused"]


def find(docker: DockerAPI, reference: str) -> dict[str, Any] | None:
    """The engine's description of image ``reference``, or None if it has none."""
    try:
        return docker.image(reference)
    except NotFoundError:
        return None


def load(
    docker: DockerAPI,
    workload: Workload,
    image: VerifiedImage,
    scope: str,
    *,
    reuse_layers: bool = True,
) -> None:
    """Make the engine hold ``image`` under its manifest tag (load it if missing);
    ``reuse_layers``: leave out the layers the engine has (see the module's docs)."""
    tag = image_tag(image.manifest_digest, scope)
    present = find(docker, image.config_digest)
    if present is not None:
        ours = {our_manifest(t, scope) for t in tags(present)}
        if image.manifest_digest not in ours:
            docker.tag(image.config_digest, repository(scope), tag.partition(":")[2])
        check_platform(present, image)
        return
    started = time.monotonic()
    held = _engine_chains(docker, scope) if reuse_layers else frozenset()
    layers = list(zip(image.layer_digests, image.layer_paths, image.layer_media_types, strict=True))
    try:
        members = docker_archive.plan_archive(
            image.config_path, image.config_digest, layers, [tag], held
        )
        try:
            docker.load(docker_archive.archive_stream(members))
        except DockerAPIError as exc:
            if not held:
                raise
            agent_log.get().warning(
                "load without the engine's layers refused; sending every layer",
                workload=workload.name,
                error=str(exc)[:300],
            )
            members = docker_archive.plan_archive(
                image.config_path, image.config_digest, layers, [tag]
            )
            docker.load(docker_archive.archive_stream(members))
    except docker_archive.ArchiveError as exc:
        raise RuntimeFailure("LoadFailed", f"{workload.name}: {exc}") from exc
    except (DockerAPIError, OSError, http.client.HTTPException) as exc:
        raise RuntimeFailure("LoadFailed", f"{workload.name}: the engine refused: {exc}") from exc
    sent = [m for m in members if m.path is not None]
    loaded = find(docker, image.config_digest)
    if loaded is None or loaded.get("Id") != image.config_digest:
        raise RuntimeFailure(
            "LoadFailed",
            f"{workload.name}: after loading, the engine has no image {image.config_digest}",
        )
    check_platform(loaded, image)
    agent_log.get().info(
        "image loaded",
        workload=workload.name,
        manifest=image.manifest_digest,
        seconds=round(time.monotonic() - started, 3),
        layers_sent=len(sent),
        bytes_sent=sum(m.size for m in sent),
        layers_reused=len(image.layer_digests) - len(sent),
    )


def _engine_chains(docker: DockerAPI, scope: str) -> frozenset[str]:
    """The chain IDs of every layer stack under our images: layers the engine holds."""
    chains: set[str] = set()
    for listed in docker.images(repository(scope)):
        try:
            attrs = docker.image(str(listed.get("Id")))
        except NotFoundError:  # removed meanwhile
            continue
        chains.update(docker_archive.chain_ids((attrs.get("RootFS") or {}).get("Layers") or []))
    return frozenset(chains)


def check_platform(attrs: Mapping[str, Any], image: VerifiedImage) -> None:
    """Refuse an image whose OS/architecture is not the platform the manifest named."""
    have = f"{attrs.get('Os', '')}/{attrs.get('Architecture', '')}"
    want = "/".join(image.platform.split("/")[:2])
    if have != want:
        raise RuntimeFailure(
            "LoadFailed", f"image {image.manifest_digest} is for {have}, the device is {want}"
        )


def remove_unused(docker: DockerAPI, scope: str, keep: set[str], in_use: set[str]) -> None:
    """Untag our images whose manifest is not in ``keep`` and whose ID is not in use."""
    for image in docker.images(repository(scope)):
        for tag in tags(image):
            manifest = our_manifest(tag, scope)
            if manifest is None or manifest in keep or image.get("Id") in in_use:
                continue
            try:
                docker.remove_image(tag)
            except NotFoundError:
                continue
            except DockerAPIError as exc:
                agent_log.get().warning("image removal failed", tag=tag, error=str(exc))
                continue
            agent_log.get().info("image removed", manifest=manifest)
