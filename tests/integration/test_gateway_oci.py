"""The gateway's /v2/ proxy against a real TLS registry, with real device certificates:
a device fetches exactly the digests reachable from its assigned image (index, its
platform's manifest, config, layers, signatures), with Range and HEAD; everything else
is a 404 identical to the one for a digest nobody has; blobs stream in bounded memory;
and the real Docker engine pulls through it with the device's certificate in certs.d."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tracemalloc
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgefleet.clients import pki as gateway_pki
from edgefleet.domain import pki, signing
from edgefleet.gateway.oci_reach import Assignment
from edgefleet.testing.engine import EngineError
from edgefleet.testing.ociapp import serve_oci
from edgefleet.testing.procs import wait_until
from edgefleet.testing.tinyimage import push_image

NS = "plant-a"
MISSING = "sha256:" + "0" * 64


def _device(gw: gateway_pki.GatewayPki, name: str, tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, NS),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    cert = gw.issue(csr.public_bytes(serialization.Encoding.PEM), namespace=NS, device=name)
    crt, keyfile = tmp / f"{name}.cert", tmp / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(pki.key_pem(key))
    keyfile.chmod(0o600)
    return crt, keyfile


@pytest.fixture(scope="module")
def images(registry_client):
    key = signing.generate_key()
    run = uuid.uuid4().hex[:8]
    a = push_image(registry_client, f"edgefleet/models/t{run}/cam-a", key, text="A")
    b = push_image(registry_client, f"edgefleet/models/t{run}/cam-b", key, text="B")
    return a, b, key


@pytest.fixture(scope="module")
def gateway(registry, images, tmp_path_factory):
    a, b, key = images
    gw = gateway_pki.ephemeral(["127.0.0.1", "localhost"], [signing.public_key_pem(key)])
    devices = {
        (NS, "dev-a"): [Assignment(a.repository, (a.index_digest,), "linux/amd64")],
        (NS, "dev-b"): [Assignment(b.repository, (b.index_digest,), "linux/amd64")],
    }
    tmp = tmp_path_factory.mktemp("devices")
    ca = tmp / "gateway-ca.crt"
    ca.write_bytes(gw.gateway_ca_bundle())
    certs = {name: _device(gw, name, tmp) for name in ("dev-a", "dev-b")}
    with serve_oci(gw, registry.url, registry.ca_path, devices) as app:
        yield app, ca, certs


def _tls(ca: Path, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


def _client(gateway, name: str | None) -> httpx.Client:
    app, ca, certs = gateway
    return httpx.Client(
        base_url=app.url, verify=_tls(ca, certs[name] if name else None), timeout=30
    )


def test_device_fetches_everything_reachable_from_its_image(gateway, images, registry_client):
    a, _, _ = images
    with _client(gateway, "dev-a") as http:
        root = http.get("/v2/")
        assert root.status_code == 200
        assert root.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        for digest in a.every_digest("linux/amd64"):
            kind = "blobs" if digest in a.blobs["linux/amd64"] else "manifests"
            got = http.get(f"/v2/{a.repository}/{kind}/{digest}")
            assert got.status_code == 200, (kind, digest, got.text)
            assert "sha256:" + hashlib.sha256(got.content).hexdigest() == digest
            assert got.headers["Docker-Content-Digest"] == digest
        index = http.get(f"/v2/{a.repository}/manifests/{a.index_digest}")
        assert index.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
        sig = http.get(f"/v2/{a.repository}/manifests/{a.index_digest.replace(':', '-')}.sig")
        assert sig.status_code == 200
        payload = json.loads(sig.content)["layers"][0]["digest"]
        assert http.get(f"/v2/{a.repository}/blobs/{payload}").status_code == 200
        # The signature verifies with the image key: the proxy changed nothing.
        blob = registry_client.get_blob(a.repository, payload)
        assert http.get(f"/v2/{a.repository}/blobs/{payload}").content == blob


def test_range_and_head(gateway, images):
    a, _, _ = images
    layer = a.blobs["linux/amd64"][1]
    with _client(gateway, "dev-a") as http:
        whole = http.get(f"/v2/{a.repository}/blobs/{layer}").content
        part = http.get(f"/v2/{a.repository}/blobs/{layer}", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206
        assert part.content == whole[10:20]
        assert part.headers["Content-Range"] == f"bytes 10-19/{len(whole)}"
        tail = http.get(f"/v2/{a.repository}/blobs/{layer}", headers={"Range": "bytes=20-"})
        assert tail.content == whole[20:]
        head = http.head(f"/v2/{a.repository}/blobs/{layer}")
        assert head.status_code == 200
        assert int(head.headers["Content-Length"]) == len(whole)
        assert head.content == b""
        mhead = http.head(f"/v2/{a.repository}/manifests/{a.index_digest}")
        assert mhead.status_code == 200
        assert mhead.headers["Docker-Content-Digest"] == a.index_digest


def test_everything_else_is_an_indistinguishable_404(gateway, images):
    a, b, _ = images
    with _client(gateway, "dev-a") as http:
        unknown_manifest = http.get(f"/v2/{a.repository}/manifests/{MISSING}")
        unknown_blob = http.get(f"/v2/{a.repository}/blobs/{MISSING}")
        assert unknown_manifest.status_code == unknown_blob.status_code == 404
        assert unknown_manifest.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        assert unknown_blob.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
        forbidden = [
            ("manifests", b.repository, b.index_digest),  # another device's image
            ("manifests", b.repository, b.manifests["linux/amd64"]),
            ("manifests", b.repository, "latest"),  # tags other than signatures
            ("manifests", a.repository, "latest"),
            ("manifests", a.repository, a.manifests["linux/arm64"]),  # not its platform
            ("manifests", b.repository, b.index_digest.replace(":", "-") + ".sig"),
            ("manifests", "no/such/repo", a.index_digest),
            ("manifests", b.repository, a.index_digest),  # its digest, another repo
        ]
        forbidden += [("blobs", b.repository, d) for d in b.blobs["linux/amd64"]]
        forbidden += [("blobs", a.repository, d) for d in a.blobs["linux/arm64"][:1]]
        for kind, repo, ref in forbidden:
            got = http.get(f"/v2/{repo}/{kind}/{ref}")
            expected = unknown_manifest if kind == "manifests" else unknown_blob
            assert (got.status_code, got.content) == (404, expected.content), (repo, ref)
            assert got.headers["Content-Type"] == expected.headers["Content-Type"]


def test_no_certificate_or_a_foreign_one_gets_nothing(gateway, images, tmp_path):
    a, _, _ = images
    with _client(gateway, None) as http:
        assert http.get("/v2/").status_code == 401
        assert http.get(f"/v2/{a.repository}/manifests/{a.index_digest}").status_code == 401
    app, ca, _ = gateway
    stranger = gateway_pki.ephemeral(["127.0.0.1"], [app.tls.pki.image_keys[0]])
    crt, key = _device(stranger, "dev-a", tmp_path)
    with (
        httpx.Client(base_url=app.url, verify=_tls(ca, (crt, key))) as http,
        pytest.raises(httpx.HTTPError),
    ):
        http.get("/v2/").raise_for_status()


@pytest.fixture(scope="module")
def big(registry_client, registry, tmp_path_factory):
    """An image with a 48 MiB layer, and a device (certificate, CA) assigned to it."""
    key = signing.generate_key()
    image = push_image(
        registry_client, f"edgefleet/big/{uuid.uuid4().hex[:8]}", key, big_layer_bytes=48 << 20
    )
    gw = gateway_pki.ephemeral(["127.0.0.1"], [signing.public_key_pem(key)])
    tmp = tmp_path_factory.mktemp("big")
    crt, keyfile = _device(gw, "dev-a", tmp)
    ca = tmp / "ca.crt"
    ca.write_bytes(gw.gateway_ca_bundle())
    devices = {(NS, "dev-a"): [Assignment(image.repository, (image.index_digest,), "linux/amd64")]}
    return image, gw, devices, _tls(ca, (crt, keyfile))


def test_blobs_stream_in_bounded_memory_and_are_counted(big, registry):
    image, gw, devices, tls = big
    size = 48 << 20
    with serve_oci(gw, registry.url, registry.ca_path, devices) as app:
        digest = hashlib.sha256()
        received = 0
        with httpx.Client(base_url=app.url, verify=tls, timeout=60) as http:
            http.get("/v2/").raise_for_status()  # warm the reachability cache first
            before = app.counter.total
            tracemalloc.start()
            try:
                with http.stream("GET", f"/v2/{image.repository}/blobs/{image.big_layer}") as r:
                    r.raise_for_status()
                    for chunk in r.iter_raw(1024 * 1024):
                        digest.update(chunk)
                        received += len(chunk)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert "sha256:" + digest.hexdigest() == image.big_layer
        assert received > size
        # The server counts a chunk once written: the last may land after the client read it.
        wait_until(lambda: app.counter.total - before == received, timeout=10, what="bytes counted")
        assert peak < 16 * 1024 * 1024, (
            f"peak Python memory {peak} bytes for a {received}-byte blob"
        )
        assert app.stalls.total == 0


def test_a_device_that_stops_reading_is_cut_off_and_can_resume(big, registry):
    image, gw, devices, tls = big
    path = f"/v2/{image.repository}/blobs/{image.big_layer}"
    with serve_oci(gw, registry.url, registry.ca_path, devices, stall_timeout=1) as app:
        raw = socket.create_connection(("127.0.0.1", app.port), timeout=30)
        with tls.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
            head = conn.recv(65536)
            assert head.startswith(b"HTTP/1.1 200")
            # Stop reading: the socket buffers fill, the gateway's write cannot drain.
            # The stall is counted on the Prometheus counter the gateway serves at /metrics.
            wait_until(lambda: app.stalls.total == 1, timeout=30, what="the stall counted")
            received = len(head)
            with contextlib.suppress(OSError):  # EOF or a reset: either way, cut off
                while chunk := conn.recv(1 << 20):
                    received += len(chunk)
        assert received < 48 << 20
        with httpx.Client(base_url=app.url, verify=tls, timeout=60) as http:  # resumes
            tail = http.get(path, headers={"Range": f"bytes={(48 << 20) - 10}-"})
            assert tail.status_code == 206
            assert len(tail.content) == image_size(image, http) - ((48 << 20) - 10)


def image_size(image, http) -> int:
    head = http.head(f"/v2/{image.repository}/blobs/{image.big_layer}")
    return int(head.headers["Content-Length"])


def _host_address() -> str | None:
    """This machine's own non-loopback IPv4 address, if it has one."""
    done = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[1] != "lo":
            return fields[3].split("/")[0]
    return None


@pytest.fixture
def docker_gateway(registry, images, tmp_path):
    """The proxy on the host's own address (Docker ignores certs.d for 127.0.0.0/8, an
    insecure registry by default) with dev-a's certificate in certs.d; removed after."""
    if not os.access("/etc", os.W_OK):
        pytest.skip("writing /etc/docker/certs.d needs root")
    address = _host_address()
    if address is None:
        pytest.skip("no non-loopback address to serve on (Docker ignores certs.d on loopback)")
    a, b, key = images
    gw = gateway_pki.ephemeral([address], [signing.public_key_pem(key)])
    devices = {
        (NS, "dev-a"): [Assignment(a.repository, (a.index_digest,), "linux/amd64")],
        (NS, "dev-b"): [Assignment(b.repository, (b.index_digest,), "linux/amd64")],
    }
    crt, keyfile = _device(gw, "dev-a", tmp_path)
    with serve_oci(gw, registry.url, registry.ca_path, devices, address=address) as app:
        directory = Path("/etc/docker/certs.d") / app.host
        directory.mkdir(parents=True, exist_ok=True)
        try:
            (directory / "ca.crt").write_bytes(gw.gateway_ca_bundle())
            shutil.copy(crt, directory / "client.cert")
            shutil.copy(keyfile, directory / "client.key")
            yield app
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def test_docker_pull_through_the_gateway(docker_engine, docker_gateway, images):
    app = docker_gateway
    a, b, _ = images
    own = f"{app.host}/{a.repository}@{a.index_digest}"
    config = a.blobs["linux/amd64"][0]
    try:
        docker_engine.docker("pull", own, timeout=120)
        image_id = docker_engine.docker("image", "inspect", "--format", "{{.Id}}", own).stdout
        assert image_id.decode().strip() == config
        assert app.counter.total > 0
        with pytest.raises(EngineError, match="manifest unknown"):
            docker_engine.docker("pull", f"{app.host}/{b.repository}@{b.index_digest}")
    finally:
        docker_engine.remove_image(config)
        docker_engine.remove_image(b.blobs["linux/amd64"][0])
