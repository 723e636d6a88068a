"""Model images as the agent's runtime receives them, for the runtime's real-engine tests.

:func:`build_model_image` builds a small model with the operator's builder and
:func:`fetch_verified` puts one platform manifest's blobs into a content-addressed
directory (the agent's verified store) as a ``VerifiedImage``; :func:`probe_of` is the
model's probe.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from edgefleet.clients.imagebuilder import BuilderSettings, ImageBuilder
from edgefleet.domain import oci
from edgefleet.testing.models import ModelFixture, make_mlp
from edgefleet_node.agent.runtime import VerifiedImage
from edgefleet_node.protocol.desired import Probe, Workload

__all__ = ["PLATFORM", "Built", "build_model_image", "fetch_verified", "probe_of"]

PLATFORM = "linux/amd64"


def fetch_verified(registry_client, repo: str, manifest_digest: str, store: Path) -> VerifiedImage:
    """Blobs of one platform manifest into ``store/<hex>``, as the agent keeps them."""
    store.mkdir(parents=True, exist_ok=True)

    def keep(digest: str, data: bytes) -> Path:
        assert oci.sha256_digest(data) == digest
        path = store / digest.removeprefix("sha256:")
        path.write_bytes(data)
        return path

    data, media_type, _ = registry_client.get_manifest(repo, manifest_digest)
    manifest = oci.parse_manifest(data, media_type, expected_digest=manifest_digest)
    manifest_path = keep(manifest_digest, data)
    config_path = keep(
        manifest.config.digest, registry_client.get_blob(repo, manifest.config.digest)
    )
    layer_paths = tuple(
        keep(d.digest, registry_client.get_blob(repo, d.digest)) for d in manifest.layers
    )
    return VerifiedImage(
        manifest_digest=manifest_digest,
        manifest_path=manifest_path,
        config_digest=manifest.config.digest,
        config_path=config_path,
        layer_digests=tuple(d.digest for d in manifest.layers),
        layer_paths=layer_paths,
        layer_media_types=tuple(d.media_type for d in manifest.layers),
        platform=PLATFORM,
    )


def probe_of(fixture: ModelFixture, *, wrong: bool = False) -> Probe:
    expected = [float(v) for v in fixture.expected_output.ravel()]
    if wrong:
        expected = [v + 1.0 for v in expected]
    return Probe(
        fixture.input_name,
        tuple(fixture.probe_input.shape),
        tuple(float(v) for v in fixture.probe_input.ravel()),
        fixture.output_name,
        tuple(expected),
        1e-3,
    )


class Built:
    def __init__(self, fixture, workload, image):
        self.fixture: ModelFixture = fixture
        self.workload: Workload = workload
        self.image: VerifiedImage = image


def build_model_image(
    registry_client, signing_key, builder_cache, model_files, store: Path, seed: int
) -> Built:
    """A small MLP model built by the operator's builder for PLATFORM, its blobs
    fetched into ``store`` as the agent keeps them."""
    directory, base_url = model_files
    path = directory / f"rt-{uuid.uuid4().hex[:8]}.onnx"
    fixture = make_mlp(path, target_bytes=64 * 1024, seed=seed)
    spec_doc = {
        "version": "1.0.0",
        "platforms": [PLATFORM],
        "source": {"url": {"url": f"{base_url}/{path.name}", "sha256": fixture.sha256}},
    }
    from edgefleet.api.inferencemodel import InferenceModelSpec

    settings = BuilderSettings(cache_dir=builder_cache)
    name = f"rt-{uuid.uuid4().hex[:6]}"
    with httpx.Client(timeout=30) as http:
        builder = ImageBuilder(registry_client, signing_key, settings, http=http)
        result = builder.build("tests", name, InferenceModelSpec.model_validate(spec_doc))
    repo = result.repository.split("/", 1)[1]
    manifest_digest = result.images[0].digest
    image = fetch_verified(registry_client, repo, manifest_digest, store)
    workload = Workload(
        name=name,
        version="1.0.0",
        repository=repo,
        index_digest=result.index_digest,
        manifest_digest=manifest_digest,
        platform=PLATFORM,
        probe=probe_of(fixture),
    )
    return Built(fixture, workload, image)
