"""The gateway's async registry reader against real registries that demand credentials:
Bearer tokens from a token server and Basic auth; manifests digest-checked, blobs
streamed with Range; refusals typed, credentials never in messages."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from edgefleet.clients.registry import RegistryClient
from edgefleet.clients.registry_errors import RegistryError
from edgefleet.clients.registry_stream import RegistryReader
from edgefleet.domain import oci, signing
from edgefleet.testing.registry import LocalRegistry, registry_unavailable
from edgefleet.testing.tinyimage import push_image


@pytest.fixture(scope="module", params=["token", "basic"])
def auth_registry(request):
    if (why := registry_unavailable(auth=True)) is not None:
        pytest.skip(why)
    with LocalRegistry(auth=True, token_auth=request.param == "token") as reg:
        yield reg


def _read(reg: LocalRegistry, repo: str, digest: str, **kw) -> tuple[int, bytes]:
    async def go() -> tuple[int, bytes]:
        reader = RegistryReader(reg.url, ca_bundle=reg.ca_path, **kw)
        try:
            async with reader.open_blob(repo, digest, range_header="bytes=1-") as response:
                return response.status, await response.read()
        finally:
            await reader.aclose()

    return asyncio.run(go())


def test_reads_through_the_auth_flow(auth_registry):
    creds = auth_registry.credentials
    repo = f"team/{uuid.uuid4().hex[:8]}"
    key = signing.generate_key()
    with RegistryClient(
        auth_registry.url,
        ca_bundle=auth_registry.ca_path,
        username=creds.username,
        password=creds.password,
    ) as client:
        image = push_image(client, repo, key)
        blob = oci.Blob(os.urandom(10_000), oci.OCI_LAYER_GZIP)
        client.push_blob(repo, blob)

    async def manifest() -> bytes | None:
        reader = RegistryReader(
            auth_registry.url,
            ca_bundle=auth_registry.ca_path,
            username=creds.username,
            password=creds.password,
        )
        try:
            found = await reader.manifest(repo, image.index_digest)
            missing = await reader.manifest(repo, "sha256:" + "0" * 64)
        finally:
            await reader.aclose()
        assert missing is None
        return found.body if found else None

    body = asyncio.run(manifest())
    assert body is not None
    assert oci.sha256_digest(body) == image.index_digest
    status, data = _read(
        auth_registry, repo, blob.digest, username=creds.username, password=creds.password
    )
    assert (status, data) == (206, blob.data[1:])


def test_wrong_or_missing_credentials_are_refused_without_leaking(auth_registry):
    repo = "team/anything"
    digest = "sha256:" + "1" * 64
    with pytest.raises(RegistryError) as err:
        _read(auth_registry, repo, digest, username="edgefleet", password="wrong-secret-x")
    assert "wrong-secret-x" not in str(err.value)
    with pytest.raises(RegistryError) as anonymous:
        _read(auth_registry, repo, digest)
    assert anonymous.value.status == 401
