"""The edge-node agent's own image: built by our daemonless builder for amd64 and arm64,
reproducible, signed, and it really runs (arm64 under qemu) as a non-root user with
its dependencies importable."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from edgefleet.clients import appbuilder, edgefleetimages
from edgefleet.domain import nodeimage, signing

PLATFORMS = ("linux/amd64", "linux/arm64")


@pytest.fixture(scope="module")
def node_builder(registry_client, base_index, signing_key, builder_cache):
    return appbuilder.AppImageBuilder(registry_client, signing_key, builder_cache / "app")


@pytest.fixture(scope="module")
def node_image(node_builder):
    repo = f"edgefleet/node-{uuid.uuid4().hex[:6]}"
    first = edgefleetimages.build_node_image(node_builder, repo, PLATFORMS, tags=["test"])
    return repo, first


@pytest.mark.timeout(600)
def test_builds_are_reproducible_and_signed(node_builder, node_image, registry_client):
    repo, first = node_image
    second = edgefleetimages.build_node_image(node_builder, repo, PLATFORMS, tags=["test"])
    assert second.index_digest == first.index_digest
    assert [i.digest for i in second.images] == [i.digest for i in first.images]
    assert second.bytes_uploaded == 0, "a rebuild of the same inputs sends nothing"
    assert {i.platform for i in first.images} == set(PLATFORMS)
    for digest in [first.index_digest, *(i.digest for i in first.images)]:
        tag = signing.signature_tag(digest)
        assert registry_client.head_manifest(repo, tag) is not None, f"{digest} is not signed"
    # the app layer is the same bytes on both platforms; the wheels differ
    assert first.images[0].app_bytes == first.images[1].app_bytes
    # a different repository, same inputs: same digests (nothing depends on where it goes)
    other = edgefleetimages.build_node_image(
        node_builder, f"{repo}-copy", PLATFORMS[:1], tags=["test"]
    )
    assert other.images[0].digest == first.images[0].digest


def _trust_registry_in_docker(registry) -> Path:
    certs = Path("/etc/docker/certs.d") / registry.host
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copy(registry.ca_path, certs / "ca.crt")
    return certs


@pytest.mark.timeout(900)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_image_runs_as_the_agent_user_with_its_dependencies(
    node_image, registry, docker_engine, platform
):
    _, result = node_image
    reference = f"{result.repository}@{result.index_digest}"
    certs = _trust_registry_in_docker(registry)

    def run(*argv: str, entrypoint: str | None = None) -> str:
        extra = ["--entrypoint", entrypoint] if entrypoint else []
        done = docker_engine.docker(
            "run", "--rm", "--pull", "never", "--platform", platform, "--network", "none",
            "--read-only", *extra, reference, *argv, timeout=300,
        )  # fmt: skip
        return done.stdout.decode().strip()

    try:
        docker_engine.docker("pull", "--platform", platform, reference, timeout=600)
        machine = run("-m", entrypoint="uname")
        assert machine == {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}[platform]
        assert run("-u", entrypoint="id") == str(nodeimage.AGENT_UID)
        owner = run("-c", "%u:%g %a", f"/{nodeimage.STATE_DIR}", entrypoint="stat")
        assert owner == f"{nodeimage.AGENT_UID}:{nodeimage.AGENT_UID} 700"
        imported = run(
            "-c",
            "import importlib.util as u, cryptography.x509, edgefleet_node.agent.docker_runtime, "
            "edgefleet_node.agent.cli; print([m for m in ('docker', 'requests', 'urllib3') "
            "if u.find_spec(m)])",
            entrypoint="python3",
        )
        assert imported == "[]", "the runtime's Docker client is the standard library's"
        usage = run("--help")  # the image's entrypoint is edgefleet-node
        assert "edgefleet-node" in usage
        assert "run" in usage
    finally:
        subprocess.run(
            [docker_engine.client, "image", "rm", "-f", reference], capture_output=True, check=False
        )
        shutil.rmtree(certs, ignore_errors=True)
