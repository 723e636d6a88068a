"""The Bearer token flow against the real distribution server with `auth: token`:
the client answers the challenge at the realm, tokens are scoped, wrong credentials
and anonymous requests are refused."""

from __future__ import annotations

import os

import pytest

from edgefleet.clients.registry import RegistryAuthError, RegistryClient
from edgefleet.clients.registry_errors import RegistryError
from edgefleet.domain import oci
from edgefleet.testing.registry import LocalRegistry, registry_unavailable


@pytest.fixture(scope="module")
def token_registry():
    if (why := registry_unavailable(auth=True)) is not None:
        pytest.skip(why)
    with LocalRegistry(token_auth=True) as reg:
        yield reg


def test_push_and_pull_with_bearer_tokens(token_registry):
    creds = token_registry.credentials
    with RegistryClient(
        token_registry.url,
        ca_bundle=token_registry.ca_path,
        username=creds.username,
        password=creds.password,
    ) as client:
        blob = oci.Blob(os.urandom(4096), oci.OCI_LAYER_GZIP)
        client.push_blob("team/model", blob)
        assert client.get_blob("team/model", blob.digest) == blob.data
        # Cross-repository mount asks for pull on the source and push on the target.
        assert client.mount_blob("team/other", blob.digest, "team/model")
    issued = token_registry.token_server.issued
    scopes = {(a["name"], tuple(a["actions"])) for t in issued for a in t["access"]}
    assert ("team/model", ("pull", "push")) in scopes
    assert ("team/model", ("pull",)) in scopes


def test_wrong_password_is_refused_at_the_token_server(token_registry):
    with (
        RegistryClient(
            token_registry.url,
            ca_bundle=token_registry.ca_path,
            username=token_registry.credentials.username,
            password="not-the-password",
        ) as client,
        pytest.raises(RegistryError) as err,
    ):
        client.has_blob("team/model", "sha256:" + "0" * 64)
    assert err.value.status == 401


def test_anonymous_client_is_refused(token_registry):
    with (
        RegistryClient(token_registry.url, ca_bundle=token_registry.ca_path) as client,
        pytest.raises(RegistryAuthError),
    ):
        client.has_blob("team/model", "sha256:" + "0" * 64)
