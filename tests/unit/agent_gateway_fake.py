"""An in-process stand-in for the device gateway, for the agent's unit tests only.

TLS with a throwaway CA, client certificates from a throwaway device CA, the routes
the agent uses (CA, enrol, renew, long-poll, reports, ``/v2/`` manifests and blobs with
Range) and switchable faults per blob: corrupt, truncate once, stall, endless stream,
declared oversize. The integration tests use the real gateway instead.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgefleet.domain import signing
from edgefleet_node.oci import types as oci
from edgefleet_node.protocol import desired, dsse, enroll, report, wire
from edgefleet_node.trust import cosign

PLATFORM = "linux/amd64"


def _ca(name: str, not_before: datetime.datetime | None = None):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(ca_key, ca_cert, subject, public_key, *, days: float, server=False, not_before=None):
    now = datetime.datetime.now(datetime.UTC)
    start = not_before or now - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pub_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class Image:
    repository: str
    index: oci.Blob
    manifest: oci.Blob
    config: oci.Blob
    layers: list[oci.Blob]

    def workload(self, name: str = "model", **kw: Any) -> desired.Workload:
        return desired.Workload(
            name=name,
            version=kw.pop("version", "1"),
            repository=self.repository,
            index_digest=self.index.digest,
            manifest_digest=self.manifest.digest,
            platform=PLATFORM,
            **kw,
        )


@dataclass
class Faults:
    corrupt: set[str] = field(default_factory=set)  # blob digests served with a flipped byte
    truncate_once: dict[str, int] = field(default_factory=dict)  # digest -> bytes, then cut
    stall: set[str] = field(default_factory=set)
    endless: set[str] = field(default_factory=set)  # no Content-Length, never ends
    declare_more: set[str] = field(default_factory=set)  # Content-Length larger than size
    offline: bool = False  # close every connection without answering
    overloaded: int | None = None  # answer polls 503 with this Retry-After
    lose_ack_once: bool = False  # take the next report batch, then close without an answer


class FakeGateway:
    def __init__(
        self,
        tmp: Path,
        *,
        cert_days: float = 7.0,
        date_offset: float = 0.0,
        server_not_before: datetime.datetime | None = None,
    ) -> None:
        self.ca_key, self.ca_cert = _ca("fake gateway CA")
        self.device_ca_key, self.device_ca_cert = _ca("fake device CA")
        self.doc_key = ec.generate_private_key(ec.SECP256R1())
        self.image_key = ec.generate_private_key(ec.SECP256R1())
        self.cert_days = cert_days
        self.date_offset = date_offset
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = _issue(
            self.ca_key,
            self.ca_cert,
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
            server_key.public_key(),
            days=30,
            server=True,
            not_before=server_not_before,
        )
        (tmp / "server.pem").write_bytes(
            server_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + pem(server_cert)
        )
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(tmp / "server.pem")
        self.ctx.verify_mode = ssl.CERT_OPTIONAL
        self.ctx.load_verify_locations(cadata=pem(self.device_ca_cert).decode())
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}  # ref -> (body, media type)
        self.faults = Faults()
        self.namespace, self.device = "fleet", "dev-1"
        self.version = 0
        self.workloads: tuple[desired.Workload, ...] = ()
        self.envelope: dsse.Envelope | None = None
        self.trust_serial = 1
        self.trust_keys: list[ec.EllipticCurvePrivateKey] = []
        self.trust_signer: ec.EllipticCurvePrivateKey | None = None
        self.reports: dict[int, report.Report] = {}  # seq -> the report (first arrival)
        self.deliveries: list[int] = []  # every seq of every batch received, in order
        self.report_posts = 0
        self.blob_bytes_sent: dict[str, int] = {}
        self.tokens: set[str] = set()
        self.refuse_serials: set[int] = set()
        self.polls: list[float] = []  # monotonic time of each long-poll
        self.changed = threading.Condition()
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.server.socket = self.ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.server.server_address[1]}"

    def __enter__(self) -> FakeGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.faults.offline = True
        self.release.set()
        with self.changed:
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # -- content ---------------------------------------------------------------------
    def token(self) -> str:
        ca_hash = enroll.ca_hash(self.ca_cert)
        tok = enroll.BootstrapToken.generate(self.namespace, self.device, ca_hash)
        self.tokens.add(tok.secret_hash())
        return str(tok)

    def add_image(
        self,
        repository: str,
        layer_sizes: list[int],
        seed: int = 0,
        *,
        sign_key=None,
        sign_digest: str | None = None,
    ) -> Image:
        import random

        rng = random.Random(seed)  # noqa: S311 -- reproducible test content
        layers = [oci.Blob(rng.randbytes(n), oci.OCI_LAYER_GZIP) for n in layer_sizes]
        config = oci.Blob(
            json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layers]},
                    "seed": seed,
                }
            ).encode(),
            oci.OCI_CONFIG,
        )
        manifest = oci.Blob(
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": oci.OCI_MANIFEST,
                    "config": config.descriptor().to_json(),
                    "layers": [b.descriptor().to_json() for b in layers],
                }
            ).encode(),
            oci.OCI_MANIFEST,
        )
        index = oci.Blob(
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": oci.OCI_INDEX,
                    "manifests": [
                        manifest.descriptor(platform=oci.Platform("linux", "amd64")).to_json()
                    ],
                }
            ).encode(),
            oci.OCI_INDEX,
        )
        for blob in (config, *layers):
            self.blobs[blob.digest] = blob.data
        for blob in (manifest, index):
            self.manifests[blob.digest] = (blob.data, blob.media_type)
        self.sign(
            repository,
            manifest.digest,
            sign_key or self.image_key,
            claim=sign_digest or manifest.digest,
        )
        return Image(repository, index, manifest, config, layers)

    def sign(self, repository: str, digest: str, key, *, claim: str) -> None:
        payload = signing.build_payload(f"gw/{repository}", claim)
        layer = signing.signature_layer(payload, signing.sign_payload(key, payload))
        image = signing.signature_image([layer])
        self.blobs[layer.digest] = payload
        self.blobs[image.config.digest] = image.config.data
        self.manifests[cosign.signature_tag(digest)] = (image.manifest.data, oci.OCI_MANIFEST)

    def publish(
        self,
        workloads: tuple[desired.Workload, ...],
        *,
        version: int | None = None,
        expires_in: float = 86400,
        namespace: str | None = None,
        device: str | None = None,
        key=None,
    ) -> desired.DesiredState:
        now = datetime.datetime.now(datetime.UTC)
        self.version = self.version + 1 if version is None else version
        doc = desired.DesiredState(
            namespace or self.namespace,
            device or self.device,
            self.version,
            now,
            now + datetime.timedelta(seconds=expires_in),
            workloads,
        )
        with self.changed:
            self.envelope = doc.sign([key or self.doc_key])
            self.changed.notify_all()
        return doc

    def trust(self) -> dsse.Envelope:
        """The trust bundle: every key in ``trust_keys`` (default: the document key),
        signed by ``trust_signer`` (default: the document key)."""
        keys = self.trust_keys or [self.doc_key]
        return desired.TrustBundle(
            self.trust_serial,
            (pem(self.ca_cert),),
            tuple(pub_pem(k) for k in keys),
            (pub_pem(self.image_key),),
        ).sign([self.trust_signer or self.doc_key])

    def issue(self, csr_pem: bytes) -> enroll.EnrollResponse:
        csr, namespace, device = enroll.csr_identity(csr_pem)
        cert = _issue(
            self.device_ca_key,
            self.device_ca_cert,
            csr.subject,
            csr.public_key(),
            days=self.cert_days,
        )
        return enroll.EnrollResponse(
            namespace,
            device,
            pem(cert),
            (pem(self.ca_cert),),
            (pub_pem(self.doc_key),),
            (pub_pem(self.image_key),),
            wire.format_time(cert.not_valid_after_utc),
        )


_BLOB = re.compile(r"/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})")
_MANIFEST = re.compile(r"/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)")


def _handler(gw: FakeGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def date_time_string(self, timestamp: float | None = None) -> str:
            return email.utils.formatdate(time.time() + gw.date_offset, usegmt=True)

        def _send(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, reason: str) -> None:
            self._send(status, json.dumps({"error": reason, "message": reason}).encode())

        def _authed(self) -> bool:
            peer = self.connection.getpeercert()
            if not peer:
                self._error(401, "NoClientCertificate")
                return False
            if int(str(peer.get("serialNumber", "0")), 16) in gw.refuse_serials:
                self._error(401, "CertificateExpired")
                return False
            return True

        def do_GET(self) -> None:
            if gw.faults.offline:
                self.close_connection = True
                self.connection.close()
                return None
            path, _, query = self.path.partition("?")
            if path == wire.CA_PATH:
                return self._send(200, pem(gw.ca_cert))
            if not self._authed():
                return None
            if path == wire.DESIRED_PATH:
                return self._desired(dict(p.split("=", 1) for p in query.split("&") if p))
            if m := _BLOB.fullmatch(path):
                return self._blob(m["digest"])
            if m := _MANIFEST.fullmatch(path):
                found = gw.manifests.get(m["ref"])
                if found is None:
                    return self._error(404, "MANIFEST_UNKNOWN")
                return self._send(200, found[0], {"Content-Type": found[1]})
            return self._error(404, "NotFound")

        def _desired(self, query: dict[str, str]) -> None:
            gw.polls.append(time.monotonic())
            if gw.faults.overloaded is not None:
                body = json.dumps({"error": "Overloaded", "message": "busy"}).encode()
                self._send(503, body, {"Retry-After": str(gw.faults.overloaded)})
                return
            deadline = time.monotonic() + float(query.get("wait", "30"))
            with gw.changed:
                while True:
                    if gw.faults.offline:
                        self.connection.close()
                        return
                    if gw.envelope is not None and str(gw.version) != query.get("have"):
                        body = desired.PollResponse(gw.envelope, gw.trust()).to_bytes()
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._send(304)
                        return
                    gw.changed.wait(timeout=left)
            self._send(200, body, {"Content-Type": "application/json"})

        def _blob(self, digest: str) -> None:
            data = gw.blobs.get(digest)
            if data is None:
                return self._error(404, "BLOB_UNKNOWN")
            if digest in gw.faults.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            start = 0
            if m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
                start = int(m[1])
            part = data[start:]
            if digest in gw.faults.stall:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                gw.release.wait(10)  # stalls until the test ends; the agent gives up sooner
                return None
            if digest in gw.faults.endless:
                self.send_response(200)
                self.end_headers()
                try:
                    self.wfile.write(data)
                    while not gw.faults.offline:
                        self.wfile.write(b"\0" * 65536)
                except OSError:
                    pass
                return None
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            extra = 1000 if digest in gw.faults.declare_more else 0
            self.send_header("Content-Length", str(len(part) + extra))
            self.end_headers()
            cut = gw.faults.truncate_once.pop(digest, None)
            chunk = part if cut is None else part[: max(cut - start, 0)]
            try:
                self.wfile.write(chunk)
            except OSError:
                return None
            gw.blob_bytes_sent[digest] = gw.blob_bytes_sent.get(digest, 0) + len(chunk)
            if cut is not None:
                self.close_connection = True
            return None

        def do_POST(self) -> None:
            if gw.faults.offline:
                self.connection.close()
                return None
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == wire.ENROLL_PATH:
                req = enroll.EnrollRequest.from_bytes(body)
                if req.token.secret_hash() not in gw.tokens:
                    return self._error(401, "TokenInvalid")
                gw.tokens.discard(req.token.secret_hash())
                return self._send(200, gw.issue(req.csr_pem).to_bytes())
            if not self._authed():
                return None
            if self.path == wire.RENEW_PATH:
                return self._send(
                    200, gw.issue(enroll.RenewRequest.from_bytes(body).csr_pem).to_bytes()
                )
            if self.path == wire.REPORTS_PATH:
                batch = report.ReportBatch.from_bytes(body)
                gw.report_posts += 1
                for r in batch.reports:
                    gw.deliveries.append(r.seq)  # a second arrival stays visible here
                    gw.reports.setdefault(r.seq, r)
                if gw.faults.lose_ack_once:
                    gw.faults.lose_ack_once = False
                    self.close_connection = True
                    self.connection.close()
                    return None
                acked = max(gw.reports)
                return self._send(200, report.Ack(acked).to_bytes())
            return self._error(404, "NotFound")

    return Handler
