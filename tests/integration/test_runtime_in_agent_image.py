"""The Docker runtime inside the agent's own image, as the agent runs on a device.

The agent image (each architecture; arm64 under qemu) runs as its non-root user with
only the Docker socket's group added, the socket mounted, host networking and a
read-only root; inside it, the runtime loads a model image from verified blobs (a
read-only mount standing in for the agent's store), starts it, probes it, and a
second runtime instance adopts it — the steps the agent takes, without the gateway.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from edgefleet.clients import appbuilder, edgefleetimages
from edgefleet.domain import nodeimage
from tests.integration.verified_images import fetch_verified, probe_of

PLATFORMS = ("linux/amd64", "linux/arm64")

SCRIPT = r"""
import json, sys, time
from pathlib import Path
from edgefleet_node.agent.docker_runtime import DockerRuntime
from edgefleet_node.agent.runtime import VerifiedImage
from edgefleet_node.protocol.desired import Workload

doc = json.loads(sys.argv[1])
workload = Workload.from_json(doc["workload"], "workload")
image = VerifiedImage(
    doc["manifest"], Path(doc["manifestPath"]), doc["config"], Path(doc["configPath"]),
    tuple(doc["layers"]), tuple(Path(p) for p in doc["layerPaths"]),
    tuple(doc["mediaTypes"]), doc["platform"],
)
runtime = DockerRuntime()
runtime.prepare(workload, image)
instance = runtime.start(workload, {"SITE": "lab"})
result = runtime.probe(instance, workload.probe, time.monotonic() + float(doc["seconds"]))
adopted = DockerRuntime().running()
import platform
print(json.dumps({
    "machine": platform.machine(), "healthy": result.healthy,
    "reason": result.reason, "message": result.message,
    "port": instance.port, "adopted": [i.id for i in adopted], "id": instance.id,
    "metrics": runtime.metrics(instance).to_json() if result.healthy else None,
}))
"""


@pytest.fixture(scope="module")
def agent_image(registry_client, base_index, signing_key, builder_cache) -> dict[str, str]:
    builder = appbuilder.AppImageBuilder(registry_client, signing_key, builder_cache / "app")
    repo = f"edgefleet/node-rt-{uuid.uuid4().hex[:6]}"
    result = edgefleetimages.build_node_image(builder, repo, PLATFORMS, tags=["test"])
    # by platform manifest: docker 20.10 keeps one local image per index reference
    return {i.platform: f"{result.repository}@{i.digest}" for i in result.images}


@pytest.fixture(scope="module")
def client(docker_engine, registry) -> Iterator[Any]:
    certs = f"/etc/docker/certs.d/{registry.host}"
    os.makedirs(certs, exist_ok=True)
    with open(registry.ca_path, "rb") as src, open(f"{certs}/ca.crt", "wb") as dst:
        dst.write(src.read())
    c = docker.from_env(timeout=600)
    try:
        yield c
    finally:
        c.close()
        os.unlink(f"{certs}/ca.crt")
        os.rmdir(certs)


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_runtime_in_the_agent_container_runs_a_model(
    client, agent_image, builder, registry_client, model_files, tmp_path, platform
):
    from edgefleet.api.inferencemodel import InferenceModelSpec
    from edgefleet.testing.models import make_mlp

    directory, base_url = model_files
    path = directory / f"in-agent-{uuid.uuid4().hex[:8]}.onnx"
    fixture = make_mlp(path, target_bytes=64 * 1024, seed=77)
    name = f"ia-{uuid.uuid4().hex[:6]}"
    spec = InferenceModelSpec.model_validate({
        "version": "1.0.0", "platforms": [platform],
        "source": {"url": {"url": f"{base_url}/{path.name}", "sha256": fixture.sha256}},
    })  # fmt: skip
    built = builder.build("tests", name, spec)
    repo = built.repository.split("/", 1)[1]
    store = tmp_path / "blobs"
    image = fetch_verified(registry_client, repo, built.images[0].digest, store)
    image = type(image)(**{**image.__dict__, "platform": platform})
    for p in [store, *store.iterdir()]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    workload = {
        "name": name, "version": "1.0.0", "repository": repo,
        "indexDigest": built.index_digest, "manifestDigest": image.manifest_digest,
        "platform": platform, "config": {}, "hostDevices": [],
        "probe": probe_of(fixture).to_json(),
    }  # fmt: skip
    arg = {
        "workload": workload, "manifest": image.manifest_digest,
        "manifestPath": f"/blobs/{image.manifest_path.name}",
        "config": image.config_digest, "configPath": f"/blobs/{image.config_path.name}",
        "layers": list(image.layer_digests),
        "layerPaths": [f"/blobs/{p.name}" for p in image.layer_paths],
        "mediaTypes": list(image.layer_media_types), "platform": platform,
        "seconds": 240 if platform == "linux/arm64" else 90,
    }  # fmt: skip
    client.images.pull(agent_image[platform], platform=platform)
    agent = client.images.get(agent_image[platform])
    assert agent.attrs["Architecture"] == platform.split("/")[1]
    try:
        output = client.containers.run(
            agent.id,
            entrypoint=["python3", "-c", SCRIPT],
            command=[json.dumps(arg)],
            user=f"{nodeimage.AGENT_UID}:{nodeimage.AGENT_UID}",
            group_add=[str(os.stat("/var/run/docker.sock").st_gid)],
            network_mode="host",
            read_only=True,
            volumes={
                "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                str(store): {"bind": "/blobs", "mode": "ro"},
            },
            remove=True,
            stderr=True,
        )
        result = json.loads(output.decode().strip().splitlines()[-1])
        assert result["healthy"], result
        assert result["machine"] == {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}[platform]
        assert result["adopted"] == [result["id"]]
        assert result["metrics"]["requests"] >= 1
        workload_container = client.containers.get(result["id"])
        assert workload_container.attrs["Config"]["Image"] == image.config_digest
        inspected = client.images.get(image.config_digest).attrs["Architecture"]
        assert inspected == platform.split("/")[1]
    finally:
        for c in client.containers.list(
            all=True, filters={"label": f"io.edgefleet.workload={name}"}
        ):
            c.remove(force=True)
        for reference in (image.config_digest, agent_image[platform]):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(reference, force=True)
