"""The signing key in a Secret: generated once when absent, used as given when supplied,
a clear error when malformed; the public key is published in a ConfigMap."""

from __future__ import annotations

import base64

import pytest
from kubernetes import client, config

from edgefleet.clients.signingkey import PRIVATE_KEY, PUBLIC_KEY, ensure_signing_key
from edgefleet.domain import signing


@pytest.fixture
def core(crds):
    api = config.new_client_from_config(config_file=str(crds.kubeconfig))
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


def _public_of(core, namespace: str, name: str) -> bytes:
    return core.read_namespaced_config_map(f"{name}-public", namespace).data[PUBLIC_KEY].encode()


def test_generated_once_then_reused(core, namespace):
    first = ensure_signing_key(core, namespace, "sign")
    second = ensure_signing_key(core, namespace, "sign")
    assert signing.public_key_pem(first) == signing.public_key_pem(second)
    assert _public_of(core, namespace, "sign") == signing.public_key_pem(first)
    secret = core.read_namespaced_secret("sign", namespace)
    assert set(secret.data) == {PRIVATE_KEY, PUBLIC_KEY}


def test_user_supplied_key_is_used(core, namespace):
    mine = signing.generate_key()
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="supplied"),
            data={PRIVATE_KEY: base64.b64encode(signing.private_key_pem(mine)).decode()},
        ),
    )
    got = ensure_signing_key(core, namespace, "supplied")
    assert signing.public_key_pem(got) == signing.public_key_pem(mine)
    assert _public_of(core, namespace, "supplied") == signing.public_key_pem(mine)


def test_secret_without_key_is_a_clear_error(core, namespace):
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="empty"), data={"other": "eA=="}),
    )
    with pytest.raises(signing.SigningKeyError, match=r"cosign\.key"):
        ensure_signing_key(core, namespace, "empty")
