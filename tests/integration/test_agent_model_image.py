"""The agent pulls a model image built and signed by the operator's daemonless builder
(Debian base, runtime layer with the platform wheels, model layer) through the real
gateway: Ready with the digest; then a weights-only update, for which the agent must
download only the new model layer (and a few KiB of documents)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from edgefleet.api.inferencemodel import InferenceModelSpec
from edgefleet.clients.imagebuilder import BuilderSettings, BuildResult, ImageBuilder
from edgefleet.testing.models import make_mlp
from edgefleet_node.agent.simulated import SimulatedRuntime
from tests.conftest import BASE_REPO, BASE_TAG
from tests.integration.agent_fixtures import PLATFORM, Running, enrol
from tests.integration.gateway_fixtures import Fleet


@pytest.fixture
def model_builder(
    registry_client, base_index, image_signing_key, builder_cache
) -> Iterator[ImageBuilder]:
    settings = BuilderSettings(
        cache_dir=builder_cache, base_repository=BASE_REPO, base_reference=BASE_TAG
    )
    with httpx.Client(timeout=30) as http:
        yield ImageBuilder(registry_client, image_signing_key, settings, http=http)


def _build(builder: ImageBuilder, model_files, fleet: Fleet, seed: int, version: str):
    directory, base_url = model_files
    path = directory / f"model-{uuid.uuid4().hex[:8]}.onnx"
    fixture = make_mlp(path, target_bytes=2 * 1024 * 1024, seed=seed)
    spec = InferenceModelSpec.model_validate(
        {
            "version": version,
            "platforms": [PLATFORM],
            "source": {"url": {"url": f"{base_url}/{path.name}", "sha256": fixture.sha256}},
        }
    )
    return builder.build(fleet.namespace, "mlp", spec)


def _desire(fleet: Fleet, revision: int, result: BuildResult, version: str) -> None:
    import json

    (image,) = result.images
    body = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": "dev-m", "namespace": fleet.namespace},
        "status": {
            "desiredRevision": revision,
            "desired": [
                {
                    "model": "mlp",
                    "version": version,
                    "repository": result.repository.partition("/")[2],
                    "indexDigest": result.index_digest,
                    "imageDigest": image.digest,
                    "config": {"EDGEFLEET_THRESHOLD": "0.5"},
                }
            ],
        },
    }
    fleet.cp.kubectl(
        "apply",
        "--server-side",
        "--subresource=status",
        "--field-manager=edgefleet-rollouts",
        "-f",
        "-",
        input_text=json.dumps(body),
    )


def test_an_operator_built_model_and_a_weights_only_update(
    agent_fleet, agent_gateway, model_builder, model_files, tmp_path
) -> None:
    first = _build(model_builder, model_files, agent_fleet, seed=11, version="1.0.0")
    second = _build(model_builder, model_files, agent_fleet, seed=12, version="1.0.1")
    state = enrol(agent_fleet, "dev-m", f"https://127.0.0.1:{agent_gateway.port}", tmp_path / "s")
    rt = SimulatedRuntime()
    _desire(agent_fleet, 1, first, "1.0.0")
    with Running(state, rt) as agent:
        agent_fleet.wait_condition("dev-m", "Ready", "True", timeout=120)
        assert [i.manifest_digest for i in rt.running()] == [first.images[0].digest]
        full = agent.activator.timings.bytes_received
        _desire(agent_fleet, 2, second, "1.0.1")
        (new,) = second.images
        agent_fleet.wait_condition("dev-m", "Ready", "True", timeout=120)
        current = agent_fleet.get("dev-m")["status"]["current"]
        assert [c["imageDigest"] for c in current] == [new.digest]
        update = agent.activator.timings.bytes_received
    ratio = update / new.model_layer_bytes
    assert ratio <= 1.05, (update, new.model_layer_bytes, full)
    assert full > 10 * new.model_layer_bytes  # the first pull had the base and runtime too
    print(
        f"\nweights-only update: {update} bytes / model layer {new.model_layer_bytes} = "
        f"{ratio:.4f}; first pull {full} bytes"
    )
