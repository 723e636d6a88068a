"""The gateway PKI in real Secrets: generated once when absent, supplied material
honoured, malformed material a clear error naming Secret and key, and a simulated device
that keeps working across a device-CA, gateway-CA (serving certificate) and
document-signing-key rotation made with `edgefleet pki rotate`."""

from __future__ import annotations

import base64
import datetime
import ssl
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from kubernetes import client, config

from edgefleet.clients import pki as gateway_pki
from edgefleet.clients import pki_rotation
from edgefleet.clients import pki_store as store
from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.domain import pki
from edgefleet.domain.pki import PkiError
from edgefleet_node.protocol import desired, dsse, enroll

EDGEFLEET = str(Path(sys.executable).parent / "edgefleet")
NAMES = ["gw.edgefleet.test", "127.0.0.1"]


@pytest.fixture
def core(crds):
    api = config.new_client_from_config(config_file=str(crds.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


@pytest.fixture
def gateway_ns(core, namespace):
    """A gateway namespace where the operator has published its image key."""
    ensure_signing_key(core, namespace, "edgefleet-signing-key")
    return namespace


def _put(core, namespace: str, name: str, data: dict[str, bytes]) -> None:
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=name),
            data={k: base64.b64encode(v).decode() for k, v in data.items()},
        ),
    )


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
    _put(core, gateway_ns, store.DEVICE_CA, {"tls.crt": mine.cert_pem, "tls.key": mine.key_pem})
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
    _put(core, gateway_ns, name, data(pki.make_ca("a"), pki.make_ca("b")))
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
    _put(core, gateway_ns, store.GATEWAY_TLS, {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem})
    with pytest.raises(PkiError, match=r"edgefleet-gateway-tls.*not issued by a trusted gateway"):
        gateway_pki.load_or_create(core, gateway_ns, NAMES)


# -- a simulated device across rotations -----------------------------------------------


class Device:
    """What an agent holds: its key and certificate, the gateway CAs, document keys and
    trust serial it trusts, and the last desired state it accepted."""

    def __init__(self, gw: gateway_pki.GatewayPki, name: str = "cam-1", ns: str = "plant") -> None:
        self.name, self.ns = name, ns
        self.renew(gw)
        response = gw.enroll_response(self.cert)
        self.gateway_cas = response.gateway_cas
        self.doc_keys = dsse.TrustedKeys.from_pems(response.signing_keys)
        self.trust_serial = 0
        self.held: desired.DesiredState | None = None
        self.version = 0

    def renew(self, gw: gateway_pki.GatewayPki) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, self.name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.ns),
            ]
        )
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(subject)
            .sign(self.key, hashes.SHA256())
        )
        pem = csr.public_bytes(serialization.Encoding.PEM)
        self.cert = gw.issue(pem, namespace=self.ns, device=self.name)

    def connect(self, tls: gateway_pki.ServerTls) -> tuple[str, str]:
        """A real TLS handshake with the gateway's live context; the identity it sees."""
        ctx = ssl.create_default_context(cadata=enroll.bundle(self.gateway_cas).decode())
        with tempfile.TemporaryDirectory() as tmp:
            crt, key = Path(tmp) / "c", Path(tmp) / "k"
            crt.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
            key.write_bytes(pki.key_pem(self.key))
            ctx.load_cert_chain(crt, key)
        bios = [ssl.MemoryBIO() for _ in range(4)]
        server = tls.context.wrap_bio(bios[0], bios[1], server_side=True)
        device = ctx.wrap_bio(bios[2], bios[3], server_hostname=NAMES[0])
        done: set[str] = set()
        for _ in range(20):
            for label, obj in (("d", device), ("s", server)):
                if label not in done:
                    try:
                        obj.do_handshake()
                        done.add(label)
                    except ssl.SSLWantReadError:
                        pass
            bios[0].write(bios[3].read())
            bios[2].write(bios[1].read())
        device.write(b"GET")
        bios[0].write(bios[3].read())
        assert server.read(3) == b"GET"
        der = server.getpeercert(binary_form=True)
        assert der is not None
        _, namespace, name = tls.pki.verify_client(der)
        return namespace, name

    def poll(self, gw: gateway_pki.GatewayPki) -> None:
        """The gateway answers a long-poll; the device applies the protocol's rules."""
        self.version += 1
        now = datetime.datetime.now(datetime.UTC)
        doc = desired.DesiredState(
            self.ns, self.name, self.version, now, now + datetime.timedelta(hours=1), ()
        )
        response = desired.PollResponse(doc.sign(gw.document_keys), gw.signed_trust_bundle())
        bundle = desired.accept_trust(response.trust, self.doc_keys, self.trust_serial)
        if bundle is not None:
            self.trust_serial = bundle.serial
            self.gateway_cas = bundle.gateway_cas
            self.doc_keys = dsse.TrustedKeys.from_pems(bundle.signing_keys)
        self.held = desired.accept(
            response.desired,
            self.doc_keys,
            namespace=self.ns,
            device=self.name,
            held=self.held,
            now=now,
        )


def _rotate(crds, namespace: str, target: str, *extra: str) -> str:
    argv = [EDGEFLEET, "pki", "rotate", target, *extra, "--gateway-namespace", namespace,
            "--kubeconfig", str(crds.kubeconfig)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_device_keeps_working_across_every_rotation(core, gateway_ns, crds):
    gw = gateway_pki.load_or_create(core, gateway_ns, NAMES)
    tls = gateway_pki.ServerTls(gw)
    device = Device(gw)
    assert device.connect(tls) == ("plant", "cam-1")
    device.poll(gw)
    serials = [gw.trust_bundle().serial]

    def reload() -> gateway_pki.GatewayPki:
        new = gateway_pki.load_or_create(core, gateway_ns, NAMES)
        tls.update(new)
        serials.append(new.trust_bundle().serial)
        return new

    # Device CA: the old certificate keeps working, renewal comes from the new CA.
    assert "old and new are trusted" in _rotate(crds, gateway_ns, "device-ca")
    gw = reload()
    assert device.connect(tls) == ("plant", "cam-1")
    old_cert, old_key = device.cert, device.key
    device.renew(gw)
    assert device.cert.issuer == gw.device_ca.current.cert.subject != old_cert.issuer
    refused = subprocess.run(
        [
            EDGEFLEET,
            "pki",
            "rotate",
            "device-ca",
            "--finish",
            "--gateway-namespace",
            gateway_ns,
            "--kubeconfig",
            str(crds.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert "--force" in refused.stderr
    _rotate(crds, gateway_ns, "device-ca", "--finish", "--force")
    gw = reload()
    assert device.connect(tls) == ("plant", "cam-1")
    with pytest.raises(PkiError, match="not issued by a trusted device CA"):
        gw.verify_client(old_cert.public_bytes(serialization.Encoding.DER))
    stale = Device.__new__(Device)
    stale.__dict__.update(device.__dict__, cert=old_cert, key=old_key)
    with pytest.raises(ssl.SSLError):
        stale.connect(tls)

    # Gateway CA: devices learn the new CA first; the serving certificate moves after.
    serving_before = gw.serving.cert
    _rotate(crds, gateway_ns, "gateway-ca")
    gw = reload()
    assert gw.serving.cert == serving_before
    laggard = Device.__new__(Device)
    laggard.__dict__.update(device.__dict__)  # never polls again: holds only the old CA
    device.poll(gw)
    assert device.gateway_cas == gw.trust_bundle().gateway_cas
    assert len(gw.gateway_ca.trusted) == 2
    assert device.connect(tls) == ("plant", "cam-1")
    assert "serving certificate re-issued" in _rotate(
        crds, gateway_ns, "gateway-ca", "--finish", "--force"
    )
    gw = reload()
    assert gw.serving.cert.issuer == gw.gateway_ca.current.cert.subject
    assert gw.serving.cert.issuer != serving_before.issuer
    assert device.connect(tls) == ("plant", "cam-1")
    with pytest.raises(ssl.SSLError):
        laggard.connect(tls)  # why the overlap matters: it missed the new CA
    device.poll(gw)
    assert device.gateway_cas == gw.trust_bundle().gateway_cas
    assert len(gw.gateway_ca.trusted) == 1

    # Document key: both keys sign during the overlap, then only the new one.
    old_doc_key = gw.document_keys[0]
    _rotate(crds, gateway_ns, "document-key")
    gw = reload()
    assert len(gw.document_keys) == 2
    device.poll(gw)
    assert len(device.doc_keys.keys) == 2
    _rotate(crds, gateway_ns, "document-key", "--finish", "--force")
    gw = reload()
    assert gw.document_keys[0] != old_doc_key
    assert len(gw.document_keys) == 1
    device.poll(gw)  # signed by the new key only, and accepted
    assert len(device.doc_keys.keys) == 1
    assert device.held is not None
    assert device.held.version == device.version

    assert serials == sorted(serials)
    assert len(set(serials)) == len(serials)
    assert device.trust_serial == serials[-1]


def test_rotation_refuses_out_of_order_steps(core, gateway_ns):
    gateway_pki.load_or_create(core, gateway_ns, NAMES)
    with pytest.raises(pki_rotation.RotationError, match="no rotation is in progress"):
        pki_rotation.rotate(core, gateway_ns, "document-key", finish=True)
    pki_rotation.rotate(core, gateway_ns, "document-key")
    with pytest.raises(pki_rotation.RotationError, match="not finished"):
        pki_rotation.rotate(core, gateway_ns, "document-key")


def test_serving_certificate_rotation_keeps_names_and_ca(core, gateway_ns):
    first = gateway_pki.load_or_create(core, gateway_ns, NAMES)
    message = pki_rotation.rotate(core, gateway_ns, "serving-cert")
    assert "re-issued" in message
    second = gateway_pki.load_or_create(core, gateway_ns, NAMES)
    assert second.serving.cert != first.serving.cert
    assert pki.covers(second.serving.cert, NAMES)
    assert pki.issued_by(second.serving.cert, first.gateway_ca.current.cert)
    assert second.serving_ca_hash() == first.serving_ca_hash()  # tokens stay valid


def test_supplied_serving_certificate_is_never_replaced(core, gateway_ns):
    gw = gateway_pki.load_or_create(core, gateway_ns, NAMES)
    core.delete_namespaced_secret(store.GATEWAY_TLS, gateway_ns)
    mine = pki.issue_server_cert(gw.gateway_ca.current, ["other.example"])
    _put(core, gateway_ns, store.GATEWAY_TLS, {"tls.crt": mine.cert_pem, "tls.key": mine.key_pem})
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


def test_generated_serving_certificate_renews_itself_but_not_mid_rotation(core, gateway_ns):
    now = datetime.datetime.now(datetime.UTC)
    first = gateway_pki.load_or_create(core, gateway_ns, NAMES, now=now)
    expired = now + datetime.timedelta(days=400)
    renewed = gateway_pki.load_or_create(core, gateway_ns, NAMES, now=expired)
    assert renewed.serving.cert != first.serving.cert
    assert renewed.serving.cert.not_valid_after_utc > expired
    # Close to expiry while a gateway-CA rotation is in progress: kept (a certificate of
    # the new CA would lock out devices that have not fetched it yet) ...
    pki_rotation.rotate(core, gateway_ns, "gateway-ca", now=expired)
    late = expired + datetime.timedelta(days=300)
    kept = gateway_pki.load_or_create(core, gateway_ns, NAMES, now=late)
    assert kept.serving.cert == renewed.serving.cert
    # ... and renewed from the new CA once the rotation is finished.
    pki_rotation.rotate(core, gateway_ns, "gateway-ca", finish=True, force=True, now=late)
    after = gateway_pki.load_or_create(core, gateway_ns, NAMES, now=late)
    assert pki.issued_by(after.serving.cert, after.gateway_ca.current.cert)
    assert after.serving.cert.not_valid_after_utc > late + datetime.timedelta(days=300)
