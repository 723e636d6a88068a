"""Deterministic image configs, manifests and indexes.

Builders return :class:`~edgefleet.domain.oci_types.Blob` objects of canonical JSON
(sorted keys, no whitespace, ``created`` fixed at the epoch), so identical inputs give
identical digests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgefleet.domain import oci_layers
from edgefleet_node.oci import parse as oci_parse
from edgefleet_node.oci import types as oci_types
from edgefleet_node.oci.types import OCIError

__all__ = ["EPOCH", "image_config", "image_index", "image_manifest"]

EPOCH = "1970-01-01T00:00:00Z"
_KEPT_CONFIG_FIELDS = ("architecture", "os", "variant", "os.version", "os.features", "config")


def _descriptor(
    item: oci_types.Descriptor | oci_types.Blob | oci_layers.Layer,
) -> oci_types.Descriptor:
    if isinstance(item, oci_layers.Layer):
        return item.descriptor()
    if isinstance(item, oci_types.Blob):
        return item.descriptor()
    return item


def _merge_env(base: Sequence[str], env: Mapping[str, str]) -> list[str]:
    merged = [e for e in base if e.partition("=")[0] not in env]
    return merged + [f"{k}={env[k]}" for k in sorted(env)]


def image_config(
    platform: oci_types.Platform,
    diff_ids: Sequence[str],
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    exposed_ports: Sequence[int | str] | None = None,
    labels: Mapping[str, str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    base_config: oci_parse.ImageConfig | None = None,
    *,
    history: Sequence[str] | None = None,
) -> oci_types.Blob:
    """An image config for ``diff_ids`` stacked on ``base_config`` (if any).

    Values given override the base's; ``env``, ``labels`` and ``exposed_ports`` are
    merged into it. As in a Dockerfile, a new ``entrypoint`` without ``cmd`` clears the
    base's ``Cmd``. ``history`` gives one ``created_by`` text per new layer.
    """
    for diff_id in diff_ids:
        oci_types.check_digest(diff_id, "diff ID")
    if history is not None and len(history) != len(diff_ids):
        raise OCIError("history needs exactly one entry per new layer")
    doc: dict[str, Any] = {}
    base_ids: list[str] = []
    base_history: list[Any] = []
    if base_config is not None:
        base = base_config.platform
        if (base.os, base.architecture) != (platform.os, platform.architecture) or (
            base.variant and base.variant != platform.variant
        ):
            raise OCIError(f"base image is for {base}, not {platform}")
        doc = {k: v for k, v in base_config.document.items() if k in _KEPT_CONFIG_FIELDS}
        base_ids = list(base_config.diff_ids)
        base_history = list(base_config.document.get("history") or [])
    doc.update(platform.to_json())
    config: dict[str, Any] = dict(doc.get("config") or {})
    if entrypoint is not None:
        config["Entrypoint"] = list(entrypoint)
        if cmd is None:
            config.pop("Cmd", None)
    if cmd is not None:
        config["Cmd"] = list(cmd)
    if env:
        config["Env"] = _merge_env(config.get("Env") or [], env)
    if exposed_ports:
        ports = dict(config.get("ExposedPorts") or {})
        ports.update({p if isinstance(p, str) else f"{p}/tcp": {} for p in exposed_ports})
        config["ExposedPorts"] = ports
    if labels:
        config["Labels"] = {**(config.get("Labels") or {}), **labels}
    if workdir is not None:
        config["WorkingDir"] = workdir
    if user is not None:
        config["User"] = user
    texts = history or [f"edgefleet layer {i + 1}" for i in range(len(diff_ids))]
    doc.update(
        created=EPOCH,
        config=config,
        rootfs={"type": "layers", "diff_ids": base_ids + list(diff_ids)},
        history=base_history + [{"created": EPOCH, "created_by": t} for t in texts],
    )
    return oci_types.Blob(oci_types.canonical_json(doc), oci_types.OCI_CONFIG)


def image_manifest(
    config: oci_types.Blob | oci_types.Descriptor,
    layers: Sequence[oci_types.Descriptor | oci_types.Blob | oci_layers.Layer],
    annotations: Mapping[str, str] | None = None,
) -> oci_types.Blob:
    """An OCI image manifest; Docker gzip layer types become their OCI equivalent."""
    descs = []
    for item in layers:
        desc = _descriptor(item)
        if desc.media_type == oci_types.DOCKER_LAYER_GZIP:
            desc = oci_types.Descriptor(
                oci_types.OCI_LAYER_GZIP, desc.digest, desc.size, desc.annotations
            )
        descs.append(desc.to_json())
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": oci_types.OCI_MANIFEST,
        "config": _descriptor(config).to_json(),
        "layers": descs,
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return oci_types.Blob(oci_types.canonical_json(doc), oci_types.OCI_MANIFEST)


def image_index(
    entries: Sequence[tuple[oci_types.Descriptor, oci_types.Platform]],
    annotations: Mapping[str, str] | None = None,
) -> oci_types.Blob:
    """An OCI image index; entries are sorted by platform so build order does not matter."""
    seen: set[oci_types.Platform] = set()
    manifests = []
    for desc, platform in sorted(entries, key=lambda e: e[1]):
        if platform in seen:
            raise OCIError(f"image index has two manifests for {platform}")
        if desc.media_type not in oci_types.MANIFEST_MEDIA_TYPES:
            raise OCIError(f"index entry for {platform} has media type {desc.media_type}")
        seen.add(platform)
        manifests.append(
            oci_types.Descriptor(
                desc.media_type, desc.digest, desc.size, desc.annotations, platform
            )
        )
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": oci_types.OCI_INDEX,
        "manifests": [m.to_json() for m in manifests],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return oci_types.Blob(oci_types.canonical_json(doc), oci_types.OCI_INDEX)
