"""From a workload in a verified document to a :class:`VerifiedImage` in the store.

Order (nothing reaches the runtime before every step passed):

1. the index, fetched by the digest the document names, must hash to that digest;
2. its manifest for the device's platform must be the ``manifestDigest`` the document
   names (which must hash to it too);
3. the manifest's cosign signature (``sha256-<hex>.sig``) must verify with a pinned
   image key and claim exactly that digest;
4. preflight: the blobs not yet in the store (plus a reserve) must fit on the disk, the
   largest layer (the weights, loaded into memory) must fit in available memory (both
   retried with backoff, as a full disk mid-download is: space may be freed);
5. config and layers are downloaded (resumable, digest-checked, size-bounded).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgefleet_node.agent import log as agent_log
from edgefleet_node.agent import store
from edgefleet_node.agent.blobs import Downloaded, DownloadError, fetch_blob
from edgefleet_node.agent.client import GatewayClient, GatewayError, UnreachableError
from edgefleet_node.agent.runtime import VerifiedImage
from edgefleet_node.oci import parse as oci_parse
from edgefleet_node.oci import types as oci_types
from edgefleet_node.protocol.desired import Workload
from edgefleet_node.trust import cosign

__all__ = ["PullError", "Resolved", "Resources", "download", "preflight", "resolve"]

_ACCEPT = ", ".join(sorted(oci_types.INDEX_MEDIA_TYPES | oci_types.MANIFEST_MEDIA_TYPES))


class PullError(Exception):
    """A workload's image cannot be used; ``reason`` is the ``UpdateFailed`` reason."""

    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class Resolved:
    workload: Workload
    manifest: oci_parse.ImageManifest
    manifest_bytes: bytes

    @property
    def blobs(self) -> tuple[oci_types.Descriptor, ...]:
        return (self.manifest.config, *self.manifest.layers)


@dataclass(frozen=True)
class Resources:
    """Free disk (where the store lives) and available memory, in bytes."""

    disk_free: int
    memory_available: int | None

    @classmethod
    def measure(cls, path: Path) -> Resources:
        return cls(shutil.disk_usage(path).free, memory_available())


def memory_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as src:
            for line in src:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _get(client: GatewayClient, path: str, accept: str, limit: int) -> tuple[bytes, str]:
    try:
        response = client.request("GET", path, headers={"Accept": accept}, limit=limit)
    except UnreachableError as exc:
        raise PullError("GatewayUnreachable", str(exc), transient=True) from exc
    except GatewayError as exc:
        transient = exc.status >= 500 or exc.status == 429
        raise PullError("ManifestUnavailable", f"GET {path}: {exc}", transient=transient) from exc
    return response.body, response.headers.get("content-type", "")


def _check(data: bytes, digest: str, what: str) -> None:
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise PullError("DigestMismatch", f"{what}: got content with digest {actual}, not {digest}")


def resolve(client: GatewayClient, workload: Workload, image_keys: Sequence[bytes]) -> Resolved:
    """Steps 1-3: index, platform manifest, signature. Raises :class:`PullError`."""
    started = time.monotonic()
    repo = workload.repository
    base = f"/v2/{repo}/manifests/"
    index_bytes, index_type = _get(
        client, base + workload.index_digest, _ACCEPT, oci_parse.MAX_MANIFEST_SIZE
    )
    _check(index_bytes, workload.index_digest, "image index")
    try:
        platform = oci_types.Platform.parse(workload.platform)
        index = oci_parse.parse_index(index_bytes, index_type or None, workload.index_digest)
        chosen = index.find(platform)
    except oci_types.OCIError as exc:
        raise PullError("PlatformUnavailable", f"{workload.name}: {exc}") from exc
    if chosen.digest != workload.manifest_digest:
        raise PullError(
            "DigestMismatch",
            f"the index {workload.index_digest} names {chosen.digest} for {platform}, "
            f"the document names {workload.manifest_digest}",
        )
    manifest_bytes, _ = _get(
        client, base + chosen.digest, chosen.media_type, oci_parse.MAX_MANIFEST_SIZE
    )
    _check(manifest_bytes, chosen.digest, "image manifest")
    try:
        manifest = oci_parse.parse_manifest(manifest_bytes, chosen.media_type, chosen.digest)
        manifest.require_image()
    except oci_types.OCIError as exc:
        raise PullError("InvalidImage", f"{workload.name}: {exc}") from exc
    fetched = time.monotonic()
    _verify_signature(client, workload, image_keys)
    agent_log.get().info(  # phase times (benchmark): documents fetched+checked, signature
        "image verified",
        workload=workload.name,
        manifest=workload.manifest_digest,
        resolve_s=round(fetched - started, 4),
        verify_s=round(time.monotonic() - fetched, 4),
    )
    return Resolved(workload, manifest, manifest_bytes)


def _verify_signature(client: GatewayClient, workload: Workload, keys: Sequence[bytes]) -> None:
    repo, digest = workload.repository, workload.manifest_digest
    try:
        tag = cosign.signature_tag(digest)
        sig_bytes, _ = _get(
            client,
            f"/v2/{repo}/manifests/{tag}",
            "application/vnd.oci.image.manifest.v1+json",
            cosign.MAX_SIGNATURE_MANIFEST_SIZE,
        )
        layers = cosign.parse_signature_manifest(sig_bytes)
    except PullError as exc:
        if exc.transient:
            raise
        raise PullError("SignatureMissing", f"{workload.name}: no signature for {digest}") from exc
    except cosign.SignatureError as exc:
        raise PullError("SignatureInvalid", f"{workload.name}: {exc}") from exc
    payloads: dict[str, bytes] = {}
    for layer in layers[:16]:
        body, _ = _get(client, f"/v2/{repo}/blobs/{layer.digest}", "*/*", cosign.MAX_PAYLOAD_SIZE)
        payloads[layer.digest] = body
    failures = []
    for pem in keys:
        try:
            cosign.verify_signatures(sig_bytes, payloads, digest, pem)
        except cosign.SignatureError as exc:
            failures.append(str(exc))
            continue
        return
    raise PullError("SignatureInvalid", f"{workload.name}: " + "; ".join(failures)[:900])


def preflight(
    resolved: Sequence[Resolved], state: store.StateDir, resources: Resources, reserve: int
) -> None:
    """Step 4 for all workloads of one document together; raises :class:`PullError`
    naming what each workload still needs (disk) or the workload that cannot fit
    (memory)."""
    missing: dict[str, int] = {}
    per_workload: dict[str, int] = {}
    for item in resolved:
        for desc in item.blobs:
            if not state.blob(desc.digest).exists():
                partial = state.blob(desc.digest).with_name(desc.digest[7:] + ".partial")
                have = partial.stat().st_size if partial.exists() else 0
                if desc.digest not in missing:
                    missing[desc.digest] = max(desc.size - have, 0)
                    name = item.workload.name
                    per_workload[name] = per_workload.get(name, 0) + missing[desc.digest]
    need = sum(missing.values()) + reserve
    if need > resources.disk_free:
        each = ", ".join(f"{name} {size}" for name, size in per_workload.items())
        raise PullError(
            "InsufficientDisk",
            f"the update needs {need} bytes on disk ({sum(missing.values())} to download: "
            f"{each}; + {reserve} reserve), {resources.disk_free} are free",
            transient=True,  # retried with backoff: space may be freed meanwhile
        )
    for item in resolved:
        weights = max((d.size for d in item.manifest.layers), default=0)
        if resources.memory_available is not None and weights > resources.memory_available:
            raise PullError(
                "InsufficientMemory",
                f"workload {item.workload.name}: its largest model layer is {weights} bytes, "
                f"{resources.memory_available} bytes of memory are available",
                transient=True,
            )


def download(
    client: GatewayClient,
    item: Resolved,
    state: store.StateDir,
    *,
    stall_timeout: float,
    stats: Downloaded | None = None,
) -> VerifiedImage:
    """Step 5: every blob into the store; the image the runtime may use."""
    paths: list[Path] = []
    for desc in item.blobs:
        try:
            paths.append(
                fetch_blob(
                    client,
                    item.workload.repository,
                    desc,
                    state,
                    stall_timeout=stall_timeout,
                    stats=stats,
                )
            )
        except DownloadError as exc:
            raise PullError(
                exc.reason, f"{item.workload.name}: {exc}", transient=exc.transient
            ) from exc
    manifest_path = state.blob(item.manifest.digest)
    if not manifest_path.exists():
        store.atomic_write(manifest_path, item.manifest_bytes)
    return VerifiedImage(
        manifest_digest=item.manifest.digest,
        manifest_path=manifest_path,
        config_digest=item.manifest.config.digest,
        config_path=paths[0],
        layer_digests=tuple(d.digest for d in item.manifest.layers),
        layer_paths=tuple(paths[1:]),
        layer_media_types=tuple(d.media_type for d in item.manifest.layers),
        platform=item.workload.platform,
    )
