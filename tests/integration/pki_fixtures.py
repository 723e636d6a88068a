"""Shared pieces of the gateway PKI integration tests: the ``core`` (CoreV1Api) and
``gateway_ns`` (a namespace with the image key published) fixtures, registered for
tests/integration by its conftest.py; writing a Secret; a simulated device that enrols,
connects over real TLS and applies polled documents; and ``edgefleet pki rotate``."""

from __future__ import annotations

import base64
import datetime
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config

from edgefleet.clients import pki as gateway_pki
from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.domain import pki
from edgefleet_node.protocol import desired, dsse, enroll

__all__ = ["EDGEFLEET", "NAMES", "Device", "core", "gateway_ns", "put_secret", "rotate"]

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


def put_secret(core, namespace: str, name: str, data: dict[str, bytes]) -> None:
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=name),
            data={k: base64.b64encode(v).decode() for k, v in data.items()},
        ),
    )


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


def rotate(crds, namespace: str, target: str, *extra: str) -> str:
    argv = [EDGEFLEET, "pki", "rotate", target, *extra, "--gateway-namespace", namespace,
            "--kubeconfig", str(crds.kubeconfig)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout
