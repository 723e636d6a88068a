"""The control plane's own image (operator + gateway): built by our daemonless builder
for amd64 and arm64, reproducible, signed, without the test harnesses, and it really
starts both commands as a non-root user with a read-only root filesystem."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from edgefleet.clients import appbuilder, edgefleetimages
from edgefleet.domain import controlplaneimage, signing

PLATFORMS = ("linux/amd64", "linux/arm64")


@pytest.fixture(scope="module")
def cp_builder(registry_client, base_index, signing_key, builder_cache):
    return appbuilder.AppImageBuilder(registry_client, signing_key, builder_cache / "app")


@pytest.fixture(scope="module")
def cp_image(cp_builder):
    repo = f"edgefleet/control-plane-{uuid.uuid4().hex[:6]}"
    return repo, edgefleetimages.build_control_plane_image(
        cp_builder, repo, PLATFORMS, tags=["test"]
    )


def test_sources_leave_out_the_test_harnesses():
    sources = edgefleetimages.control_plane_sources()
    assert "edgefleet/handlers/operator.py" in sources
    assert "edgefleet/gateway/server.py" in sources
    assert "edgefleet_node/protocol/desired.py" in sources
    assert "edgefleet/domain/runtime_lock.json" in sources  # read at run time
    assert not [p for p in sources if p.startswith("edgefleet/testing/")]


@pytest.mark.timeout(900)
def test_builds_are_reproducible_and_signed(cp_builder, cp_image, registry_client):
    repo, first = cp_image
    second = edgefleetimages.build_control_plane_image(cp_builder, repo, PLATFORMS, tags=["test"])
    assert second.index_digest == first.index_digest
    assert second.bytes_uploaded == 0
    for digest in [first.index_digest, *(i.digest for i in first.images)]:
        assert registry_client.head_manifest(repo, signing.signature_tag(digest)) is not None


@pytest.mark.timeout(900)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_both_commands_start_non_root_read_only(cp_image, registry, docker_engine, platform):
    _, result = cp_image
    reference = f"{result.repository}@{result.index_digest}"
    certs = Path("/etc/docker/certs.d") / registry.host
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copy(registry.ca_path, certs / "ca.crt")

    def run(*argv: str, entrypoint: str | None = None, check: bool = True):
        extra = ["--entrypoint", entrypoint] if entrypoint else []
        return subprocess.run(
            [docker_engine.client, "run", "--rm", "--pull", "never", "--platform", platform,
             "--network", "none", "--read-only", *extra, reference, *argv],
            capture_output=True, text=True, check=check, timeout=600,
        )  # fmt: skip

    try:
        docker_engine.docker("pull", "--platform", platform, reference, timeout=900)
        assert run("-u", entrypoint="id").stdout.strip() == str(controlplaneimage.UID)
        # Both commands import everything they need and refuse a missing setting clearly.
        for command in ("operator", "gateway"):
            done = run(command, check=False)
            assert done.returncode == 2, done.stderr[-2000:]
            assert "must be set" in done.stdout + done.stderr  # names the variable
        imported = run(
            "-c", "import kopf, kubernetes, aiohttp, uvloop, edgefleet.gateway.app, "
            "edgefleet.handlers.operator; print('ok')", entrypoint="python3",
        )  # fmt: skip
        assert imported.stdout.strip() == "ok"
        harness = run("-c", "import edgefleet.testing", entrypoint="python3", check=False)
        assert harness.returncode != 0, "the test harnesses must not ship"
    finally:
        subprocess.run(
            [docker_engine.client, "image", "rm", "-f", reference], capture_output=True, check=False
        )
        shutil.rmtree(certs, ignore_errors=True)
