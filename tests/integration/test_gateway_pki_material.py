"""The gateway PKI in real Secrets: generated once when absent and reused (also by replicas
starting together), supplied material honoured, malformed material a clear error naming
Secret and key, and the serving certificate following the names."""

from __future__ import annotations

import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client, config

from edgefleet.clients import pki as gateway_pki
from edgefleet.clients import pki_rotation
from edgefleet.clients import pki_store as store
from edgefleet.domain import pki
from edgefleet.domain.pki import PkiError
from tests.integration.pki_fixtures import NAMES, put_secret


def test_generated_once_then_reused(core, gateway_ns):
    first = gateway_pki.load_or_create(core, gateway_ns, NAMES)
    second = gateway_pki.load_or_create(core, gateway_ns, NAMES)
    assert first.device_ca.current.cert == second.device_ca.current.cert
    assert first.gateway_ca.current.cert == second.gateway_ca.current.cert
    assert first.serving.cert == second.serving.cert
    assert first.signing_key_pems() == second.signing_key_pems()
    assert first.trust_serial == second.trust_serial == 1
    assert pki.covers(first.serving.cert, NAMES)
    keys = {
        store.DEVICE_CA: {"tls.crt", "tls.key"},
        store.GATEWAY_CA: {"tls.crt", "tls.key"},
        store.GATEWAY_TLS: {"tls.crt", "tls.key"},
        store.DOCUMENT_KEY: {"document.key"},
    }
    for name, expected in keys.items():
        assert set(core.read_namespaced_secret(name, gateway_ns).data) == expected
    assert "cosign.key" not in str(first.image_keys)
    image_key = core.read_namespaced_config_map("edgefleet-signing-key-public", gateway_ns)
    assert first.image_keys == (image_key.data["cosign.pub"].encode(),)


def test_without_the_image_key_the_gateway_is_not_ready(core, namespace):
    with pytest.raises(store.PkiNotReadyError, match="edgefleet-signing-key-public"):
        gateway_pki.load_or_create(core, namespace, NAMES)


def test_supplied_device_ca_is_used(core, gateway_ns):
    mine = pki.make_ca("my device CA")
    put_secret(
        core, gateway_ns, store.DEVICE_CA, {"tls.crt": mine.cert_pem, "tls.key": mine.key_pem}
    )
    loaded = gateway_pki.load_or_create(core, gateway_ns, NAMES)
    assert loaded.device_ca.current.cert == mine.cert


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        (
            store.DEVICE_CA,
            lambda ca, other: {"tls.crt": ca.cert_pem, "tls.key": other.key_pem},
            r"Secret \S+/edgefleet-device-ca: tls\.key does not belong",
        ),
        (
            store.GATEWAY_CA,
            lambda ca, other: {
                "tls.crt": pki.issue_server_cert(ca, ["x"]).cert_pem,
                "tls.key": pki.issue_server_cert(ca, ["x"]).key_pem,
            },
            r"edgefleet-gateway-ca: tls\.(crt is not a CA|key does not belong)",
        ),
        (
            store.DEVICE_CA,
            lambda ca, other: {
                "tls.crt": ca.cert_pem,
                "tls.key": ca.key_pem,
                "trusted.crt": b"garbage",
            },
            r"edgefleet-device-ca trusted\.crt is not a PEM",
        ),
        (
            store.DOCUMENT_KEY,
            lambda ca, other: {
                "document.key": rsa.generate_private_key(65537, 2048).private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            },
            r"edgefleet-document-key document\.key must be an ECDSA P-256 key",
        ),
        (store.DOCUMENT_KEY, lambda ca, other: {"other": b"x"}, r"has no 'document\.key' entry"),
    ],
    ids=["key-mismatch", "not-a-ca", "bad-trusted", "rsa-document-key", "missing-key"],
)
def test_malformed_material_names_secret_and_key(core, gateway_ns, name, data, match):
    put_secret(core, gateway_ns, name, data(pki.make_ca("a"), pki.make_ca("b")))
    with pytest.raises(PkiError, match=match):
        gateway_pki.load_or_create(core, gateway_ns, NAMES)


def test_serving_certificate_follows_the_names(core, gateway_ns):
    first = gateway_pki.load_or_create(core, gateway_ns, NAMES)
    again = gateway_pki.load_or_create(core, gateway_ns, [*NAMES, "gw2.edgefleet.test"])
    assert again.serving.cert != first.serving.cert
    assert pki.covers(again.serving.cert, [*NAMES, "gw2.edgefleet.test"])


def test_supplied_serving_certificate_of_an_untrusted_ca_is_an_error(core, gateway_ns):
    stranger = pki.make_ca("stranger")
    pair = pki.issue_server_cert(stranger, NAMES)
    put_secret(
        core, gateway_ns, store.GATEWAY_TLS, {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
    )
    with pytest.raises(PkiError, match=r"edgefleet-gateway-tls.*not issued by a trusted gateway"):
        gateway_pki.load_or_create(core, gateway_ns, NAMES)


def test_supplied_serving_certificate_is_never_replaced(core, gateway_ns):
    gw = gateway_pki.load_or_create(core, gateway_ns, NAMES)
    core.delete_namespaced_secret(store.GATEWAY_TLS, gateway_ns)
    mine = pki.issue_server_cert(gw.gateway_ca.current, ["other.example"])
    put_secret(
        core, gateway_ns, store.GATEWAY_TLS, {"tls.crt": mine.cert_pem, "tls.key": mine.key_pem}
    )
    assert gateway_pki.load_or_create(core, gateway_ns, NAMES).serving.cert == mine.cert
    assert "is yours" in pki_rotation.rotate(core, gateway_ns, "serving-cert")
    stored = store.read_secret(core, gateway_ns, store.GATEWAY_TLS)
    assert stored is not None
    assert stored.need("tls.crt").startswith(mine.cert.public_bytes(serialization.Encoding.PEM))


def test_replicas_starting_together_agree_on_one_pki(crds, gateway_ns):
    """Two gateway replicas generating at once: every create race has one winner and
    both end up with the winner's material."""
    results: list[gateway_pki.GatewayPki] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        api = config.new_client_from_config(config_file=str(crds.kubeconfig))  # type: ignore[no-untyped-call]
        try:
            barrier.wait(10)
            results.append(gateway_pki.load_or_create(client.CoreV1Api(api), gateway_ns, NAMES))
        except BaseException as exc:
            errors.append(exc)
        finally:
            api.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(results) == 4
    for other in results[1:]:
        assert other.device_ca.current.cert == results[0].device_ca.current.cert
        assert other.gateway_ca.current.cert == results[0].gateway_ca.current.cert
        assert other.serving.cert == results[0].serving.cert
        assert other.signing_key_pems() == results[0].signing_key_pems()
