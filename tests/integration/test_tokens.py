"""Bootstrap tokens against the real API server: bound to an existing EdgeDevice, stored
only as a hash, single use even under concurrent redemption, expiring (and cleaned up),
and `edgefleet token create` prints exactly the token."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from kubernetes import client, config

from edgefleet.clients import pki, tokens
from edgefleet.clients.tokens import TokenError
from edgefleet_node.protocol.enroll import BootstrapToken

ROOT = Path(__file__).resolve().parents[2]
EDGEFLEET = str(Path(sys.executable).parent / "edgefleet")
PIN = "ab" * 32


@pytest.fixture
def api(crds):
    api = config.new_client_from_config(config_file=str(crds.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield api
    finally:
        api.close()


def _device(api, namespace: str, name: str) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "edgefleet.io",
        "v1alpha1",
        namespace,
        "edgedevices",
        {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": name},
            "spec": {"platform": "linux/arm64"},
        },
    )


def _token_secrets(api, namespace: str) -> list[client.V1Secret]:
    return client.CoreV1Api(api).list_namespaced_secret(namespace).items


def _records(api, namespace: str) -> dict[str, dict[str, str]]:
    """The token store's entries (token id -> record), decoded."""
    secrets = _token_secrets(api, namespace)
    assert [s.metadata.name for s in secrets] == [tokens.SECRET_NAME]
    return {k: json.loads(base64.b64decode(v)) for k, v in (secrets[0].data or {}).items()}


def test_token_for_a_missing_device_is_refused_and_nothing_stored(api, namespace):
    with pytest.raises(TokenError, match="does not exist") as err:
        tokens.create_token(
            api, gateway_namespace=namespace, namespace=namespace, device="ghost", ca_hash=PIN
        )
    assert err.value.reason == "DeviceNotFound"
    assert _token_secrets(api, namespace) == []


def test_stored_as_hash_and_single_use(api, namespace):
    _device(api, namespace, "cam-1")
    token = tokens.create_token(
        api, gateway_namespace=namespace, namespace=namespace, device="cam-1", ca_hash=PIN
    )
    (secret,) = _token_secrets(api, namespace)
    assert secret.type == tokens.SECRET_TYPE
    records = _records(api, namespace)
    assert records == {
        token.token_id: {
            "secretHash": token.secret_hash(),
            "namespace": namespace,
            "device": "cam-1",
            "expiresAt": records[token.token_id]["expiresAt"],
        }
    }
    assert token.secret not in str(secret.to_dict())
    core = client.CoreV1Api(api)
    wrong = BootstrapToken(namespace, "cam-1", token.token_id, "x" * 43, PIN)
    with pytest.raises(TokenError, match="unknown, already used") as err:
        tokens.redeem(core, namespace, wrong)
    assert err.value.reason == "TokenInvalid"
    other = BootstrapToken(namespace, "cam-2", token.token_id, token.secret, PIN)
    with pytest.raises(TokenError, match="unknown, already used"):
        tokens.redeem(core, namespace, other)
    with pytest.raises(TokenError, match="unknown, already used"):
        tokens.check(core, namespace, wrong)
    assert tokens.check(core, namespace, token).device == "cam-1"  # checked, not used up
    assert token.token_id in _records(api, namespace)
    info = tokens.redeem(core, namespace, token)  # the failures above did not burn it
    assert (info.namespace, info.device) == (namespace, "cam-1")
    assert _records(api, namespace) == {}
    with pytest.raises(TokenError, match="unknown, already used"):
        tokens.redeem(core, namespace, token)
    with pytest.raises(TokenError, match="unknown, already used"):
        tokens.check(core, namespace, token)


def test_concurrent_redemptions_have_exactly_one_winner(api, namespace, crds):
    _device(api, namespace, "cam-1")
    token = tokens.create_token(
        api, gateway_namespace=namespace, namespace=namespace, device="cam-1", ca_hash=PIN
    )
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        with config.new_client_from_config(config_file=str(crds.kubeconfig)) as a:  # type: ignore[no-untyped-call]
            try:
                tokens.redeem(client.CoreV1Api(a), namespace, token)
                result = "won"
            except TokenError as exc:
                result = exc.reason
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["TokenInvalid"] * 7 + ["won"]


def test_expired_tokens_are_refused_and_cleaned_up(api, namespace):
    _device(api, namespace, "cam-1")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)
    core = client.CoreV1Api(api)
    token = tokens.create_token(
        api,
        gateway_namespace=namespace,
        namespace=namespace,
        device="cam-1",
        ca_hash=PIN,
        ttl=datetime.timedelta(hours=1),
        now=past,
    )
    with pytest.raises(TokenError, match="expired") as err:
        tokens.redeem(core, namespace, token)
    assert err.value.reason == "TokenExpired"
    assert _records(api, namespace) == {}
    tokens.create_token(
        api,
        gateway_namespace=namespace,
        namespace=namespace,
        device="cam-1",
        ca_hash=PIN,
        ttl=datetime.timedelta(hours=1),
        now=past,
    )
    fresh = tokens.create_token(  # creating prunes the expired one
        api, gateway_namespace=namespace, namespace=namespace, device="cam-1", ca_hash=PIN
    )
    assert [i.token_id for i in tokens.list_tokens(core, namespace)] == [fresh.token_id]


def test_cli_prints_exactly_the_token_pinned_to_the_gateway_ca(api, namespace, crds):
    _device(api, namespace, "cam-1")
    argv = [EDGEFLEET, "token", "create", "cam-1", "-n", namespace, "--ttl", "2h",
            "--gateway-namespace", namespace, "--kubeconfig", str(crds.kubeconfig)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    token = BootstrapToken.parse(lines[0])
    assert (token.namespace, token.device) == (namespace, "cam-1")
    assert token.ca_hash == pki.gateway_pin(api, namespace)
    assert token.secret not in done.stderr
    listed = subprocess.run(
        [
            EDGEFLEET,
            "token",
            "list",
            "--gateway-namespace",
            namespace,
            "--kubeconfig",
            str(crds.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert token.token_id in listed
    assert f"{namespace}/cam-1" in listed
    assert token.secret not in listed
    missing = subprocess.run(
        [*argv[:3], "ghost", *argv[4:]], capture_output=True, text=True, timeout=60, check=False
    )
    assert missing.returncode == 1
    assert "EdgeDevice" in missing.stderr
    assert missing.stdout == ""
    bad_ttl = subprocess.run(
        [*argv[:7], "forever", *argv[8:]], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad_ttl.returncode == 2
    assert "not a duration" in bad_ttl.stderr
