"""The drift check of a built InferenceModel: is what its status names still in the registry?

The drift timer (:mod:`edgefleet.handlers.inferencemodel`) runs it through
:meth:`edgefleet.clients.imagebuilder.ImageBuilder.verify` on models that are Ready for
their generation; anything it finds missing is ``DriftDetected`` and rebuilt.
"""

from __future__ import annotations

from edgefleet.api.inferencemodel import InferenceModelStatus
from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import oci, signing

__all__ = ["missing"]


def missing(registry: RegistryClient, status: InferenceModelStatus) -> list[str]:
    """What of ``status``'s build is missing from ``registry`` (empty: nothing).

    Checks the index, every platform manifest and their signature tags with HEAD
    requests, then every platform manifest's config and layer blobs (one GET of each
    small manifest, a HEAD per distinct blob: a blob a registry garbage collection or
    a hand removed is drift too). Registry failures propagate (a check that could not
    run is not drift).
    """
    if status.index_digest is None or status.repository is None:
        return ["status names no image index"]
    host, _, repo = status.repository.partition("/")
    if host != registry.host:
        return [f"images are in {host}, not in the operator's registry"]
    problems = []
    present: list[tuple[str, str]] = []
    for what, digest in [
        ("index", status.index_digest),
        *((image.platform, image.digest) for image in status.images),
    ]:
        if registry.head_manifest(repo, digest) is None:
            problems.append(f"{what} {repo}@{digest} is missing from the registry")
            continue
        if what != "index":
            present.append((what, digest))
        if registry.head_manifest(repo, signing.signature_tag(digest)) is None:
            problems.append(f"the signature of {what} {repo}@{digest} is missing")
    return problems + _missing_blobs(registry, repo, present)


def _missing_blobs(
    registry: RegistryClient, repo: str, manifests: list[tuple[str, str]]
) -> list[str]:
    problems, checked = [], set()
    for platform, digest in manifests:
        data, media_type, _ = registry.get_manifest(repo, digest)
        manifest = oci.parse_manifest(data, media_type, expected_digest=digest)
        for blob in (manifest.config, *manifest.layers):
            if blob.digest in checked:
                continue
            checked.add(blob.digest)
            if not registry.has_blob(repo, blob.digest):
                problems.append(
                    f"blob {blob.digest} of {platform} {repo}@{digest} is missing from the registry"
                )
    return problems
