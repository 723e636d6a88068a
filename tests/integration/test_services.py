"""The real services the other tests stand on: registry, Docker engine, qemu, base images.

Everything is started here on 127.0.0.1 (the engine by ``hack/dockerd.sh`` when none
answers) and torn down again. A test skips only when a tool is genuinely missing
(``hack/system-deps.sh`` installs them all; CI runs it, so CI never skips).
"""

from __future__ import annotations

import hashlib
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from edgefleet.clients import baseimage, rootfs
from edgefleet.testing import engine
from edgefleet.testing.registry import (
    Credentials,
    LocalRegistry,
    registry_fixture,
    registry_unavailable,
)

pytestmark = pytest.mark.integration

_UNAME = {"amd64": "x86_64", "arm64": "aarch64"}


def _get(
    url: str,
    context: ssl.SSLContext,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    data: bytes | None = None,
) -> tuple[int, Message]:
    """Status and headers (case-insensitive) of one request; HTTP errors are answers."""
    request = urllib.request.Request(url, headers=headers or {}, method=method, data=data)  # noqa: S310
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
            return int(response.status), response.headers
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers


registry = pytest.fixture(registry_fixture, name="registry")
docker_engine = pytest.fixture(engine.docker_engine_fixture, name="docker_engine", scope="module")


@pytest.fixture
def auth_registry() -> Iterator[LocalRegistry]:
    if (why := registry_unavailable(auth=True)) is not None:
        pytest.skip(why)
    with LocalRegistry(auth=Credentials("fleet", "s3cret-pass")) as reg:
        yield reg


def _rootfs_or_skip(arch: str) -> rootfs.Rootfs:
    spec = rootfs.RootfsSpec(arch)
    cached = rootfs.cache_root() / f"{spec.key}.tar"
    if not cached.is_file() and (os.geteuid() != 0 or not Path("/usr/bin/mmdebstrap").is_file()):
        pytest.skip(
            f"no cached {arch} rootfs and cannot build one here: run "
            "hack/system-deps.sh, then python -m edgefleet.clients.rootfs_cli build "
            f"--arch {arch} as root"
        )
    if arch != "amd64" and not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        pytest.skip("binfmt_misc has no qemu-aarch64 entry: run hack/system-deps.sh")
    return rootfs.ensure_rootfs(spec, progress=print)


# -- registry --------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_registry_serves_v2_over_tls_verified_by_its_ca(registry: LocalRegistry) -> None:
    status, headers = _get(registry.url + "/v2/", registry.ssl_context())
    assert status == 200
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert registry.host == f"127.0.0.1:{registry.port}"
    assert registry.credentials is None


@pytest.mark.timeout(30)
def test_registry_is_rejected_by_a_client_that_does_not_trust_its_ca(
    registry: LocalRegistry,
) -> None:
    with pytest.raises(urllib.error.URLError) as info:
        _get(registry.url + "/v2/", ssl.create_default_context())
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


@pytest.mark.timeout(30)
def test_auth_registry_rejects_anonymous_and_wrong_password(
    auth_registry: LocalRegistry,
) -> None:
    ctx, url = auth_registry.ssl_context(), auth_registry.url + "/v2/"
    creds = auth_registry.credentials
    assert creds is not None

    status, headers = _get(url, ctx)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="edgefleet"'

    wrong = Credentials(creds.username, "not-the-password")
    assert _get(url, ctx, {"Authorization": wrong.authorization})[0] == 401
    assert _get(url, ctx, {"Authorization": creds.authorization})[0] == 200


@pytest.mark.timeout(60)
def test_registry_storage_dir_survives_a_restart_and_deletes_work(tmp_path: Path) -> None:
    if (why := registry_unavailable()) is not None:
        pytest.skip(why)
    blob = b"edgefleet test blob\n"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with LocalRegistry(storage_dir=tmp_path / "blobs") as first:
        ctx = first.ssl_context()
        status, headers = _get(f"{first.url}/v2/t/blobs/uploads/", ctx, method="POST")
        assert status == 202
        location = urllib.parse.urljoin(first.url, headers["Location"])
        status, _ = _get(
            f"{location}&digest={digest}",
            ctx,
            {"Content-Type": "application/octet-stream"},
            "PUT",
            blob,
        )
        assert status == 201
    with LocalRegistry(storage_dir=tmp_path / "blobs") as second:
        ctx, blob_url = second.ssl_context(), f"{second.url}/v2/t/blobs/{digest}"
        status, headers = _get(blob_url, ctx, method="HEAD")
        assert (status, headers["Docker-Content-Digest"]) == (200, digest)
        assert _get(blob_url, ctx, method="DELETE")[0] == 202
        assert _get(blob_url, ctx, method="HEAD")[0] == 404


# -- Docker engine and foreign architectures ----------------------------------------------


@pytest.mark.timeout(180)
def test_engine_answers_with_host_networking_only(docker_engine: engine.Engine) -> None:
    assert docker_engine.server_version()
    networks = docker_engine.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert b"host" in networks
    assert b"bridge" not in networks  # dockerd --bridge=none: no NAT, no private subnet


@pytest.mark.timeout(1800)  # a cold arm64 rootfs build under qemu takes minutes
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_container_of_each_architecture_runs_python(
    docker_engine: engine.Engine, arch: str
) -> None:
    fs = _rootfs_or_skip(arch)
    image = baseimage.base_image(fs, progress=print)
    image_id = engine.load_image(docker_engine, image.config, [image.layer])
    try:
        out = (
            docker_engine.docker(
                "run",
                "--rm",
                "--network",
                "host",
                "--pull",
                "never",
                "--platform",
                str(image.platform),
                image_id,
                "sh",
                "-c",
                'uname -m && python3 -c "import platform; print(platform.machine())"',
                timeout=300,
            )
            .stdout.decode()
            .split()
        )
        assert out == [_UNAME[arch], _UNAME[arch]]
    finally:
        docker_engine.remove_image(image_id)


@pytest.mark.timeout(1800)
def test_base_index_is_reproducible_and_pulls_by_digest_per_platform(
    registry: LocalRegistry, docker_engine: engine.Engine
) -> None:
    from edgefleet.clients.registry import RegistryClient

    arches = ["amd64", "arm64"]
    for arch in arches:
        _rootfs_or_skip(arch)
    with RegistryClient(registry.url, ca_bundle=registry.ca_path) as client:
        digest = baseimage.push_base_index(
            client, "edgefleet/base", arches, tag="bookworm", progress=print
        )
        before = client.snapshot()
        again = baseimage.push_base_index(client, "edgefleet/base", arches)
        after = client.snapshot()
    assert again == digest
    assert after.blob_bytes_uploaded == before.blob_bytes_uploaded  # nothing new to send

    reference = f"{registry.host}/edgefleet/base@{digest}"
    # The engine trusts 127.0.0.0/8 registries without our CA (its default insecure range).
    docker_engine.docker("pull", "--platform", "linux/arm64", reference, timeout=600)
    image_id = (
        docker_engine.docker("image", "inspect", "--format", "{{.Id}}", reference)
        .stdout.decode()
        .strip()
    )
    try:
        out = (
            docker_engine.docker(
                "run",
                "--rm",
                "--network",
                "host",
                "--pull",
                "never",
                "--platform",
                "linux/arm64",
                image_id,
                "uname",
                "-m",
                timeout=300,
            )
            .stdout.decode()
            .strip()
        )
        assert out == "aarch64"
    finally:
        docker_engine.remove_image(image_id)
