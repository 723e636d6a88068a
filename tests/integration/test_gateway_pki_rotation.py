"""Rotating the gateway PKI in real Secrets: a simulated device keeps working across a
device-CA, gateway-CA (serving certificate) and document-signing-key rotation made with
`edgefleet pki rotate`; steps out of order are refused; the serving certificate is
re-issued on rotation and renews itself, but not in the middle of a gateway-CA rotation."""

from __future__ import annotations

import datetime
import ssl
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization

from edgefleet.clients import pki as gateway_pki
from edgefleet.clients import pki_rotation
from edgefleet.domain import pki
from edgefleet.domain.pki import PkiError
from tests.integration.pki_fixtures import EDGEFLEET, NAMES, Device, rotate


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
    assert "old and new are trusted" in rotate(crds, gateway_ns, "device-ca")
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
    rotate(crds, gateway_ns, "device-ca", "--finish", "--force")
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
    rotate(crds, gateway_ns, "gateway-ca")
    gw = reload()
    assert gw.serving.cert == serving_before
    laggard = Device.__new__(Device)
    laggard.__dict__.update(device.__dict__)  # never polls again: holds only the old CA
    device.poll(gw)
    assert device.gateway_cas == gw.trust_bundle().gateway_cas
    assert len(gw.gateway_ca.trusted) == 2
    assert device.connect(tls) == ("plant", "cam-1")
    assert "serving certificate re-issued" in rotate(
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
    rotate(crds, gateway_ns, "document-key")
    gw = reload()
    assert len(gw.document_keys) == 2
    device.poll(gw)
    assert len(device.doc_keys.keys) == 2
    rotate(crds, gateway_ns, "document-key", "--finish", "--force")
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
