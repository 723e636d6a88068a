"""An in-process stand-in for the device gateway, for the agent's unit tests only.

TLS with a throwaway CA, client certificates from a throwaway device CA
(:mod:`tests.unit.agent_gateway_pki`), the routes the agent uses (CA, enrol, renew,
long-poll, reports, ``/v2/`` manifests and blobs with Range:
:mod:`tests.unit.agent_gateway_http`) and switchable faults per blob: corrupt, truncate
once, stall, endless stream, declared oversize. This module holds the gateway's state
and the content it serves. The integration tests use the real gateway instead.
"""

from __future__ import annotations

import datetime
import json
import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.domain import signing
from edgefleet_node.oci import types as oci
from edgefleet_node.protocol import desired, dsse, enroll, report, wire
from edgefleet_node.trust import cosign
from tests.unit import agent_gateway_http
from tests.unit import agent_gateway_pki as pki

__all__ = ["PLATFORM", "FakeGateway", "Faults", "Image"]

PLATFORM = "linux/amd64"


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
        self.ca_key, self.ca_cert = pki.new_ca("fake gateway CA")
        self.device_ca_key, self.device_ca_cert = pki.new_ca("fake device CA")
        self.doc_key = ec.generate_private_key(ec.SECP256R1())
        self.image_key = ec.generate_private_key(ec.SECP256R1())
        self.cert_days = cert_days
        self.date_offset = date_offset
        self.ctx = pki.server_context(
            tmp, self.ca_key, self.ca_cert, self.device_ca_cert, not_before=server_not_before
        )
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
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), agent_gateway_http.handler(self))
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
            (pki.pem(self.ca_cert),),
            tuple(pki.pub_pem(k) for k in keys),
            (pki.pub_pem(self.image_key),),
        ).sign([self.trust_signer or self.doc_key])

    def issue(self, csr_pem: bytes) -> enroll.EnrollResponse:
        csr, namespace, device = enroll.csr_identity(csr_pem)
        cert = pki.issue_cert(
            self.device_ca_key,
            self.device_ca_cert,
            csr.subject,
            csr.public_key(),
            days=self.cert_days,
        )
        return enroll.EnrollResponse(
            namespace,
            device,
            pki.pem(cert),
            (pki.pem(self.ca_cert),),
            (pki.pub_pem(self.doc_key),),
            (pki.pub_pem(self.image_key),),
            wire.format_time(cert.not_valid_after_utc),
        )
