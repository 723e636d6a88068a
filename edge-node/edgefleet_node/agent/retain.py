"""What an activation keeps: each workload's previous image, for instant rollback.

``previous`` maps a workload name to the manifest digest it ran before its last image
change. A rollback (a document naming that digest again) needs no download of blobs
and no image load: only the small index, manifest and signature documents are fetched
again and verified. Everything else — engine images and store blobs no kept manifest
references, partial downloads of superseded updates — is collected after a commit.
"""

from __future__ import annotations

from collections.abc import Mapping

from edgefleet_node.agent import store
from edgefleet_node.agent.runtime import Instance
from edgefleet_node.oci import parse as oci_parse

__all__ = ["collect_blobs", "instance", "instance_json", "next_previous"]


def next_previous(
    previous: Mapping[str, str],
    replaced: Mapping[str, str],
    current: Mapping[str, str],
) -> dict[str, str]:
    """The rollback image per workload after an activation.

    ``replaced``: workload name -> manifest digest that ran until now (changed or
    removed workloads); ``current``: name -> manifest digest that runs from now. A
    workload whose image did not change (a config-only update) keeps its earlier
    previous image; a workload removed by this activation keeps its image until the
    next one; a workload gone before that keeps nothing.
    """
    out: dict[str, str] = {}
    for name, digest in current.items():
        old = replaced.get(name)
        if old is not None and old != digest:
            out[name] = old
        elif name in previous and previous[name] != digest:
            out[name] = previous[name]
    for name, digest in replaced.items():
        if name not in current:
            out[name] = digest
    return out


def collect_blobs(state: store.StateDir, keep_manifests: set[str]) -> None:
    """Delete store blobs no kept manifest references (best effort)."""
    referenced: set[str] = set()
    for digest in keep_manifests:
        path = state.blob(digest)
        try:
            manifest = oci_parse.parse_manifest(path.read_bytes(), None, digest)
        except (OSError, ValueError):
            return  # unsure what is referenced: delete nothing
        referenced |= {digest, manifest.config.digest, *(d.digest for d in manifest.layers)}
    for path in state.blobs.iterdir():
        if path.name.startswith("."):
            continue
        # Partial downloads belong to updates that were superseded: nothing is in
        # flight while an activation runs, so they can go too.
        if path.name.endswith(".partial") or "sha256:" + path.name not in referenced:
            path.unlink(missing_ok=True)


def instance_json(i: Instance) -> dict[str, object]:
    return {
        "id": i.id,
        "workload": i.workload,
        "manifestDigest": i.manifest_digest,
        "version": i.version,
        "configVersion": i.config_version,
        "port": i.port,
    }


def instance(doc: Mapping[str, object]) -> Instance:
    port = doc.get("port")
    return Instance(
        str(doc["id"]),
        str(doc["workload"]),
        str(doc["manifestDigest"]),
        str(doc["version"]),
        str(doc["configVersion"]),
        int(port) if isinstance(port, int) else None,
    )
