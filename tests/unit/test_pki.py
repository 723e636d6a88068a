"""The gateway PKI, pure: CAs, serving and device certificates, validation of supplied
material, and the TLS contexts, exercised by real TLS handshakes over memory BIOs."""

from __future__ import annotations

import datetime
import ssl
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgefleet.clients import pki as gateway_pki
from edgefleet.clients.pki import CaSet, ServerTls
from edgefleet.clients.pki_store import StoredObject
from edgefleet.domain import pki
from edgefleet.domain.pki import PkiError
from edgefleet_node.protocol import desired, dsse, enroll
from edgefleet_node.protocol.wire import ProtocolError

NOW = datetime.datetime(2026, 11, 24, 4, 0, tzinfo=datetime.UTC)


def csr_for(device: str, namespace: str, key=None) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, device),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, namespace),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), key


def test_device_certificate_has_the_identity_and_usages():
    ca = pki.make_ca("device CA", now=NOW)
    csr, key = csr_for("cam-1", "plant-a")
    cert = pki.issue_device_cert(ca, csr, namespace="plant-a", device="cam-1", now=NOW)
    assert pki.cert_identity(cert) == ("plant-a", "cam-1")
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(days=7)
    assert cert.public_key() == key.public_key()
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    other = pki.issue_device_cert(ca, csr, namespace="plant-a", device="cam-1", now=NOW)
    assert other.serial_number != cert.serial_number
    assert pki.verify_client_cert(cert, [ca.cert], now=NOW) == ("plant-a", "cam-1")


def test_device_certificate_lifetime_is_configurable_and_capped_by_the_ca():
    ca = pki.make_ca("device CA", lifetime=datetime.timedelta(days=2), now=NOW)
    csr, _ = csr_for("cam-1", "plant-a")
    short = pki.issue_device_cert(
        ca, csr, namespace="plant-a", device="cam-1", lifetime=datetime.timedelta(hours=1), now=NOW
    )
    assert short.not_valid_after_utc == NOW + datetime.timedelta(hours=1)
    capped = pki.issue_device_cert(ca, csr, namespace="plant-a", device="cam-1", now=NOW)
    assert capped.not_valid_after_utc == ca.cert.not_valid_after_utc
    with pytest.raises(PkiError, match="lifetime"):
        pki.issue_device_cert(
            ca, csr, namespace="plant-a", device="cam-1", lifetime=datetime.timedelta(seconds=5)
        )


@pytest.mark.parametrize(
    ("csr", "match"),
    [
        (lambda: csr_for("cam-2", "plant-a")[0], "names plant-a/cam-2"),
        (lambda: csr_for("cam-1", "plant-b")[0], "names plant-b/cam-1"),
        (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nnope\n", "not a PEM"),
        (
            lambda: csr_for("cam-1", "plant-a", rsa.generate_private_key(65537, 2048))[0],
            "P-256 or P-384",
        ),
    ],
    ids=["other-device", "other-namespace", "garbage", "rsa-key"],
)
def test_bad_csrs_are_refused(csr, match):
    ca = pki.make_ca("device CA", now=NOW)
    with pytest.raises(ProtocolError, match=match):
        pki.issue_device_cert(ca, csr(), namespace="plant-a", device="cam-1", now=NOW)


def test_serving_certificate_covers_names_and_ips():
    ca = pki.make_ca("gateway CA", now=NOW)
    pair = pki.issue_server_cert(ca, ["gw.example", "127.0.0.1", "::1"], now=NOW)
    assert pki.covers(pair.cert, ["gw.example", "127.0.0.1"])
    assert pki.covers(pair.cert, ["0:0::1"])
    assert not pki.covers(pair.cert, ["other.example"])
    assert pair.chain == (ca.cert,)
    with pytest.raises(PkiError, match="neither an IP"):
        pki.issue_server_cert(ca, ["bad name"])


def test_supplied_material_errors_name_the_problem():
    ca = pki.make_ca("CA", now=NOW)
    leaf = pki.issue_server_cert(ca, ["gw"], now=NOW)
    rsa_pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    where = "Secret ns/edgefleet-device-ca"
    with pytest.raises(PkiError, match=r"tls\.key must be an ECDSA P-256 key"):
        pki.load_keypair(ca.cert_pem, rsa_pem, where, ca=True, now=NOW)
    with pytest.raises(PkiError, match=r"tls\.key does not belong"):
        pki.load_keypair(ca.cert_pem, leaf.key_pem, where, ca=True, now=NOW)
    with pytest.raises(PkiError, match="is not a CA certificate"):
        pki.load_keypair(leaf.cert_pem, leaf.key_pem, where, ca=True, now=NOW)
    later = NOW + datetime.timedelta(days=4000)
    with pytest.raises(PkiError, match="expired"):
        pki.load_keypair(ca.cert_pem, ca.key_pem, where, ca=True, now=later)
    with pytest.raises(PkiError, match="not a PEM certificate"):
        pki.load_keypair(b"junk", ca.key_pem, where, ca=True, now=NOW)
    with pytest.raises(PkiError, match="not an unencrypted PEM private key"):
        pki.load_signing_key(b"junk", f"{where} document.key")
    pair = pki.load_keypair(leaf.cert_pem, leaf.key_pem, where, ca=False, now=NOW)
    assert pair.chain == (ca.cert,)
    with pytest.raises(PkiError, match="certificate 0 is not a CA"):
        pki.load_cert_bundle(leaf.cert_pem, "trusted.crt", now=NOW)
    old = pki.make_ca("old", lifetime=datetime.timedelta(days=1), now=NOW)
    usable, expired = pki.load_cert_bundle(
        ca.cert_pem + old.cert_pem, "trusted.crt", now=NOW + datetime.timedelta(days=2)
    )
    assert (usable, expired) == ([ca.cert], [old.cert])


def test_client_certificates_of_other_cas_or_expired_are_refused():
    ca, other = pki.make_ca("device CA", now=NOW), pki.make_ca("device CA", now=NOW)
    csr, _ = csr_for("cam-1", "plant-a")
    foreign = pki.issue_device_cert(other, csr, namespace="plant-a", device="cam-1", now=NOW)
    with pytest.raises(PkiError, match="not issued by a trusted device CA"):
        pki.verify_client_cert(foreign, [ca.cert], now=NOW)
    mine = pki.issue_device_cert(ca, csr, namespace="plant-a", device="cam-1", now=NOW)
    with pytest.raises(PkiError, match="expired"):
        pki.verify_client_cert(mine, [ca.cert], now=NOW + datetime.timedelta(days=8))


# -- TLS contexts ----------------------------------------------------------------------

IMAGE_KEY = pki.public_pem(pki.generate_key())


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> bytes | None:
    """A real TLS handshake over memory BIOs; the client certificate the server saw."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="gw.test")
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, obj in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    # TLS 1.3 checks the client certificate after the client finished: exchange data.
    client.write(b"ping")
    s_in.write(c_out.read())
    assert server.read(4) == b"ping"
    return server.getpeercert(binary_form=True)


def _client(gw: gateway_pki.GatewayPki, cert: x509.Certificate | None, key=None):
    ctx = ssl.create_default_context(cadata=gw.gateway_ca_bundle().decode())
    if cert is not None:
        with tempfile.TemporaryDirectory() as tmp:
            c, k = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
            c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            k.write_bytes(pki.key_pem(key))
            ctx.load_cert_chain(c, k)
    return ctx


def _device(gw: gateway_pki.GatewayPki, name: str = "cam-1"):
    csr, key = csr_for(name, "plant-a")
    return gw.issue(csr, namespace="plant-a", device=name), key


def test_server_context_verifies_devices_and_allows_enrolment_without_a_cert():
    gw = gateway_pki.ephemeral(["gw.test"], [IMAGE_KEY])
    cert, key = _device(gw)
    seen = _handshake(gw.server_context(), _client(gw, cert, key))
    assert seen is not None
    assert gw.verify_client(seen)[1:] == ("plant-a", "cam-1")
    assert _handshake(gw.server_context(), _client(gw, None)) is None  # enrolment
    stranger = gateway_pki.ephemeral(["gw.test"], [IMAGE_KEY])
    foreign, fkey = _device(stranger)
    with pytest.raises(ssl.SSLError):
        _handshake(gw.server_context(), _client(gw, foreign, fkey))


def test_server_context_requires_tls_1_2_and_asks_for_client_certificates():
    ctx = gateway_pki.ephemeral(["gw.test"], [IMAGE_KEY]).server_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_OPTIONAL


def _rotated_device_ca(gw: gateway_pki.GatewayPki, *, keep_old: bool) -> gateway_pki.GatewayPki:
    new = pki.make_ca("device CA 2")
    trusted = (new.cert, gw.device_ca.current.cert) if keep_old else (new.cert,)
    return gateway_pki.GatewayPki(
        device_ca=CaSet(new, trusted, StoredObject("Secret", "", "d", {})),
        gateway_ca=gw.gateway_ca,
        serving=gw.serving,
        document_keys=gw.document_keys,
        image_keys=gw.image_keys,
        trust_serial=gw.trust_serial + 1,
    )


def test_server_tls_swaps_trusted_device_cas_under_a_running_context():
    gw = gateway_pki.ephemeral(["gw.test"], [IMAGE_KEY])
    old_cert, old_key = _device(gw)
    tls = ServerTls(gw)
    overlap = _rotated_device_ca(gw, keep_old=True)
    tls.update(overlap)
    new_cert, new_key = _device(overlap)
    assert new_cert.issuer != old_cert.issuer
    assert _handshake(tls.context, _client(gw, old_cert, old_key)) is not None
    assert _handshake(tls.context, _client(gw, new_cert, new_key)) is not None
    finished = gateway_pki.GatewayPki(
        device_ca=CaSet(
            overlap.device_ca.current, (overlap.device_ca.current.cert,), overlap.device_ca.stored
        ),
        gateway_ca=gw.gateway_ca,
        serving=gw.serving,
        document_keys=gw.document_keys,
        image_keys=gw.image_keys,
        trust_serial=3,
    )
    tls.update(finished)
    assert _handshake(tls.context, _client(gw, new_cert, new_key)) is not None
    with pytest.raises(ssl.SSLError):
        _handshake(tls.context, _client(gw, old_cert, old_key))
    with pytest.raises(PkiError):
        finished.verify_client(old_cert.public_bytes(serialization.Encoding.DER))


def test_trust_bundle_and_enrol_response_carry_what_devices_pin():
    gw = gateway_pki.ephemeral(["gw.test"], [IMAGE_KEY])
    bundle = gw.trust_bundle()
    assert bundle.image_keys == (IMAGE_KEY,)
    envelope = gw.signed_trust_bundle()
    trusted = dsse.TrustedKeys.from_pems(gw.signing_key_pems())
    assert desired.accept_trust(envelope, trusted, 0) == bundle
    pin = gw.serving_ca_hash()
    assert enroll.pinned_cas(gw.gateway_ca_bundle(), pin)
    cert, _ = _device(gw)
    response = gw.enroll_response(cert)
    assert enroll.EnrollResponse.from_bytes(response.to_bytes()) == response
    assert (response.namespace, response.device) == ("plant-a", "cam-1")
