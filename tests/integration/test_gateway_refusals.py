"""Everything the gateway must refuse, each with a clear error and nothing written, and
the gateway still up afterwards (real API server, real TLS, simulated devices)."""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.domain import pki as pki_domain
from edgefleet.testing.pki import CertificateAuthority
from edgefleet.testing.procs import wait_until
from edgefleet.testing.simdevice import make_csr
from edgefleet_node.protocol import wire
from edgefleet_node.protocol.enroll import BootstrapToken

TLS_REFUSED = (ssl.SSLError, ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError)


def _status(fleet, name):
    return fleet.get(name).get("status") or {}


def _healthy(fleet) -> None:
    sim = fleet.sim("probe")
    sim.gateway_ca = fleet.gateway.pki().gateway_ca_bundle()

    async def health() -> int:
        from edgefleet.testing.simdevice_http import Connection

        conn = Connection("127.0.0.1", fleet.gateway.port, sim._context(client_cert=False))
        try:
            return (await conn.request("GET", "/healthz")).status
        finally:
            conn.close()

    assert fleet.run(health()) == 200


def test_a_token_works_once(fleet):
    fleet.device("d1")
    token = fleet.token("d1")
    first = fleet.sim("d1")
    assert fleet.run(first.enroll(token)).status == 200
    enrolled = _status(fleet, "d1")["enrollment"]
    again = fleet.run(fleet.sim("d1").enroll(token))
    assert (again.status, again.reason) == (401, "TokenInvalid")
    assert "already used" in again.json()["message"]
    assert _status(fleet, "d1")["enrollment"] == enrolled
    _healthy(fleet)


def test_an_expired_token_is_refused(fleet):
    fleet.device("d2")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)
    token = fleet.token("d2", ttl=datetime.timedelta(hours=1), now=past)
    result = fleet.run(fleet.sim("d2").enroll(token))
    assert (result.status, result.reason) == (401, "TokenExpired")
    assert "enrollment" not in _status(fleet, "d2")


def test_a_token_for_another_device_is_refused(fleet):
    fleet.device("d3")
    fleet.device("d4")
    token_for_d4 = fleet.token("d4")
    sim = fleet.sim("d3")
    result = fleet.run(sim.enroll(token_for_d4))  # its CSR names d3
    assert (result.status, result.reason) == (400, "CsrSubjectMismatch")
    assert "enrollment" not in _status(fleet, "d3")
    assert "enrollment" not in _status(fleet, "d4")
    # ...and the token was not burnt by the refused request.
    assert fleet.run(fleet.sim("d4").enroll(token_for_d4)).status == 200


@pytest.mark.parametrize(
    ("csr", "reason"),
    [
        (b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
         "Malformed"),
        ("other-namespace", "CsrSubjectMismatch"),
    ],
)  # fmt: skip
def test_malformed_or_foreign_named_csr(fleet, csr, reason):
    fleet.device("d5")
    if csr == "other-namespace":
        csr = make_csr(ec.generate_private_key(ec.SECP256R1()), "kube-system", "d5")
    result = fleet.run(fleet.sim("d5").enroll(fleet.token("d5"), csr_pem=csr))
    assert (result.status, result.reason) == (400, reason)
    assert "enrollment" not in _status(fleet, "d5")


def test_platform_mismatch_is_refused_with_a_condition_and_keeps_the_token(fleet):
    fleet.device("d6", platform="linux/amd64")
    token = fleet.token("d6")
    device = fleet.sim("d6", platform="linux/arm64")
    result = fleet.run(device.enroll(token))
    assert (result.status, result.reason) == (403, "PlatformMismatch")
    assert "enrol again with the same token" in result.json()["message"]
    enrolled = fleet.condition("d6", "Enrolled")
    assert (enrolled["status"], enrolled["reason"]) == ("False", "PlatformMismatch")
    assert "linux/amd64" in enrolled["message"]
    assert "enrollment" not in _status(fleet, "d6")
    # Without a valid token the platform is not judged (nothing learnt, nothing written).
    unknown = str(BootstrapToken.generate(fleet.namespace, "d6", fleet.ca_hash))  # never stored
    stranger = fleet.run(fleet.sim("d6", platform="linux/arm64").enroll(unknown))
    assert (stranger.status, stranger.reason) == (401, "TokenInvalid")
    # The user fixes the spec; the same token enrols the device.
    fleet.patch_spec("d6", {"platform": "linux/arm64"})
    wait_until(
        lambda: (
            fleet.gateway.call(
                lambda: fleet.gateway.gateway.cache.get(fleet.namespace, "d6").spec.platform
            )
            == "linux/arm64"
        ),
        timeout=10,
        what="the gateway saw the fixed spec",
        interval=0.1,
    )
    assert fleet.run(device.enroll(token)).status == 200
    fleet.wait_condition("d6", "Enrolled", "True")
    assert "enrollment" in _status(fleet, "d6")


def test_certificates_of_another_ca_or_expired_fail_the_handshake(fleet):
    sim = fleet.enrolled("d7")
    good_cert = sim.cert_pem
    # Another CA, same subject.
    rogue = CertificateAuthority("rogue").issue("d7", organizations=(fleet.namespace,), client=True)
    intruder = fleet.sim("d7", instance_id=sim.instance_id)
    intruder.gateway_ca, intruder.signing_keys = sim.gateway_ca, sim.signing_keys
    intruder.cert_pem = rogue.cert_pem
    from cryptography.hazmat.primitives import serialization

    intruder.key = serialization.load_pem_private_key(rogue.key_pem, None)
    with pytest.raises(TLS_REFUSED):
        fleet.run(intruder.poll(wait=0))
    # The right CA, but expired.
    ca = fleet.gateway.pki().device_ca.current
    key = ec.generate_private_key(ec.SECP256R1())
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    expired = pki_domain.issue_device_cert(
        ca, make_csr(key, fleet.namespace, "d7"), namespace=fleet.namespace, device="d7",
        lifetime=datetime.timedelta(days=1), now=long_ago,
    )  # fmt: skip
    late = fleet.sim("d7", instance_id=sim.instance_id)
    late.gateway_ca, late.signing_keys, late.key = sim.gateway_ca, sim.signing_keys, key
    late.cert_pem = expired.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(TLS_REFUSED):
        fleet.run(late.poll(wait=0))
    # The real device is unaffected.
    assert sim.cert_pem == good_cert
    assert fleet.run(sim.poll(wait=0)).status == 200
    _healthy(fleet)


def test_routes_need_a_client_certificate(fleet):
    sim = fleet.enrolled("d8")

    async def anonymous() -> tuple[int, str | None]:
        from edgefleet.testing.simdevice_http import Connection

        conn = Connection("127.0.0.1", fleet.gateway.port, sim._context(client_cert=False))
        try:
            result = await conn.request("GET", wire.DESIRED_PATH + "?wait=0")
            return result.status, result.reason
        finally:
            conn.close()

    assert fleet.run(anonymous()) == (401, "CertificateRequired")


def test_a_device_only_ever_gets_its_own_document(fleet):
    a = fleet.enrolled("da")
    fleet.enrolled("db")
    fleet.set_desired("db", 1, {"secret-model": "9.9.9"})
    assert fleet.run(a.poll(wait=0)).status == 200
    assert (a.held.namespace, a.held.device) == (fleet.namespace, "da")
    assert a.held.workloads == ()
    # Query parameters cannot name another device.
    result = fleet.run(a.call("GET", wire.DESIRED_PATH + "?wait=0&device=db",
                              headers={wire.INSTANCE_HEADER: a.instance_id}))  # fmt: skip
    assert result.status == 200
    assert json.loads(result.body)["desired"]["payload"]
    assert fleet.run(a.poll(wait=0, have=None)).status == 200
    assert a.held.device == "da"


def test_invalid_json_and_oversized_bodies(fleet):
    sim = fleet.enrolled("d9")
    bad = fleet.run(sim.call("POST", wire.REPORTS_PATH, b"{not json"))
    assert (bad.status, bad.reason) == (400, "Malformed")
    dup = fleet.run(sim.call("POST", wire.REPORTS_PATH, b'{"reports": [], "reports": []}'))
    assert (dup.status, dup.reason) == (400, "Malformed")
    big = fleet.run(sim.call("POST", wire.REPORTS_PATH, b"x" * (wire.MAX_REPORT_BODY + 1)))
    assert (big.status, big.reason) == (413, "TooLarge")
    assert "reportSeq" not in _status(fleet, "d9") or _status(fleet, "d9")["reportSeq"] == 0
    assert fleet.run(sim.poll(wait=0)).status == 200


def test_slow_clients_are_cut_off(fleet):
    sim = fleet.enrolled("d10")
    limits = fleet.gateway.cfg.limits

    async def slow_body() -> tuple[int, float]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", fleet.gateway.port, ssl=sim._context(client_cert=True),
            server_hostname="127.0.0.1",
        )  # fmt: skip
        started = time.monotonic()
        try:
            writer.write(
                f"POST {wire.REPORTS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                "Content-Type: application/json\r\n\r\n{".encode()
            )
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 30)
            return int(line.split()[1]), time.monotonic() - started
        finally:
            writer.close()

    status, elapsed = fleet.run(slow_body())
    assert status == 408
    assert elapsed < limits.body_timeout + 3

    async def silent() -> float:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", fleet.gateway.port, ssl=sim._context(client_cert=True),
            server_hostname="127.0.0.1",
        )  # fmt: skip
        started = time.monotonic()
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 60) in (b"",)
            return time.monotonic() - started
        finally:
            writer.close()

    assert fleet.run(silent()) < limits.idle_timeout + 5

    async def no_handshake() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", fleet.gateway.port)
        started = time.monotonic()
        try:
            assert await asyncio.wait_for(reader.read(), 60) == b""
            return time.monotonic() - started
        finally:
            writer.close()

    assert fleet.run(no_handshake()) < limits.handshake_timeout + 3
    assert fleet.run(sim.poll(wait=0)).status == 200
    _healthy(fleet)


def test_duplicate_identity_is_flagged_without_flapping(fleet):
    sim = fleet.enrolled("d11")
    assert fleet.run(sim.poll(wait=0)).status == 200
    fleet.wait_condition("d11", "Online", "True")
    clone = fleet.sim("d11")  # another installation holding a copy of the key
    clone.gateway_ca, clone.cert_pem, clone.key = sim.gateway_ca, sim.cert_pem, sim.key
    clone.signing_keys = sim.signing_keys
    refused = fleet.run(clone.poll(wait=0))
    assert (refused.status, refused.reason) == (409, "DuplicateIdentity")
    refused = fleet.run(clone.report())
    assert (refused.status, refused.reason) == (409, "DuplicateIdentity")
    fleet.wait_condition("d11", "DuplicateIdentity", "True")
    settled = fleet.get("d11")
    for _ in range(3):
        assert fleet.run(clone.poll(wait=0)).status == 409
        assert fleet.run(sim.poll(wait=0.2)).status == 304
    after = fleet.get("d11")
    assert after["metadata"]["resourceVersion"] == settled["metadata"]["resourceVersion"]
    assert after["status"]["enrollment"]["instanceId"] == sim.instance_id


def test_a_cloned_device_is_flagged(fleet):

    sim = fleet.enrolled("d12")
    assert fleet.run(sim.poll(wait=0)).status == 200
    clone = fleet.sim("d12", instance_id=sim.instance_id)  # a copy of the state directory
    clone.gateway_ca, clone.cert_pem, clone.key = sim.gateway_ca, sim.cert_pem, sim.key
    clone.signing_keys, clone.held = sim.signing_keys, sim.held
    stop = asyncio.Event()

    async def start():
        return [asyncio.create_task(d.run(stop, wait=5)) for d in (sim, clone)]

    tasks = fleet.run(start())
    try:
        fleet.drive_until(
            lambda: (fleet.condition("d12", "DuplicateIdentity") or {}).get("status") == "True",
            timeout=30,
            what="the clone flagged",
        )
        assert "cloned" in fleet.condition("d12", "DuplicateIdentity")["message"]
    finally:
        stop.set()
        fleet.run(asyncio.gather(*tasks))
