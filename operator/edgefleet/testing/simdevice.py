"""Simulated devices: the device protocol, spoken in-process, cheaply, by thousands.

A :class:`SimDevice` makes its own key and CSR, enrols with a bootstrap token (checking
the gateway CA against the token's pin), then talks mTLS with its client certificate
over one keep-alive connection: the desired-state long-poll (documents verified with
:func:`edgefleet_node.protocol.desired.accept`), reports, renewal. It runs no
workloads: it reports each desired workload as running and healthy (``healthy=False``
reports it unhealthy). HTTP is a minimal HTTP/1.1 client over asyncio streams, so a
device costs one socket, one ``SSLContext`` and a few KB: the gateway tests, the
rollout tests and ``bench/gateway.py`` run hundreds to thousands in one process
(that client is :mod:`edgefleet.testing.simdevice_http`).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import random
import secrets
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgefleet.testing.simdevice_http import Connection, HttpResult
from edgefleet_node.protocol import desired, dsse, report, wire
from edgefleet_node.protocol import enroll as enrolment

__all__ = ["HttpResult", "SimDevice", "make_csr"]


def make_csr(key: ec.EllipticCurvePrivateKey, namespace: str, name: str) -> bytes:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, namespace),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


@dataclass
class SimDevice:
    """One simulated device of ``namespace/name`` against the gateway at ``host:port``."""

    host: str
    port: int
    namespace: str
    name: str
    platform: str = "linux/arm64"
    workdir: Path | None = None  # where the key is written to load it; None: a temp dir, removed
    instance_id: str = field(default_factory=lambda: secrets.token_hex(16))
    healthy: bool = True
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    gateway_ca: bytes | None = None
    cert_pem: bytes | None = None
    signing_keys: tuple[bytes, ...] = ()
    held: desired.DesiredState | None = None
    seq: int = 0
    documents: int = 0
    last_document_at: float = 0.0  # monotonic
    acked: int = 0
    polls_ok: int = 0  # answered 200 or 304
    failures: int = 0  # connection or protocol failures in run()
    last_ok_at: float = 0.0  # monotonic
    _conn: Connection | None = None

    # -- TLS -------------------------------------------------------------------
    def _context(self, *, client_cert: bool, verify: bool = True) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if verify:
            assert self.gateway_ca is not None
            ctx.load_verify_locations(cadata=self.gateway_ca.decode())
        else:  # first contact only: the CA is then checked against the token's pin
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if client_cert:
            assert self.cert_pem is not None
            if self.workdir is not None:
                self._load_chain(ctx, self.workdir)
            else:  # the context keeps what it loaded: the files need not outlive this
                with tempfile.TemporaryDirectory(prefix="simdev-") as tmp:
                    self._load_chain(ctx, Path(tmp))
        return ctx

    def _load_chain(self, ctx: ssl.SSLContext, where: Path) -> None:
        assert self.cert_pem is not None
        cert, key = where / f"{self.name}.crt", where / f"{self.name}.key"
        cert.write_bytes(self.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(
                self.key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        ctx.load_cert_chain(cert, key)

    def connection(self) -> Connection:
        if self._conn is None:
            self._conn = Connection(self.host, self.port, self._context(client_cert=True))
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    async def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> HttpResult:
        """A request over the device's mTLS connection."""
        return await self.connection().request(method, path, body, headers, timeout)

    # -- enrolment ---------------------------------------------------------------
    async def fetch_ca(self, token: enrolment.BootstrapToken) -> bytes:
        conn = Connection(self.host, self.port, self._context(client_cert=False, verify=False))
        try:
            result = await conn.request("GET", wire.CA_PATH)
        finally:
            conn.close()
        if result.status != 200:
            raise RuntimeError(f"GET {wire.CA_PATH}: {result.status}")
        return enrolment.pinned_cas(result.body, token.ca_hash)

    async def enroll(self, token: str, *, csr_pem: bytes | None = None) -> HttpResult:
        """Enrol with a bootstrap token; on 200 the device holds its certificate."""
        parsed = enrolment.BootstrapToken.parse(token)
        if self.gateway_ca is None:
            self.gateway_ca = await self.fetch_ca(parsed)
        request = enrolment.EnrollRequest(
            parsed,
            csr_pem or make_csr(self.key, self.namespace, self.name),
            self.platform,
            self.instance_id,
            {"architecture": self.platform.split("/")[1], "agentVersion": "sim"},
        )
        conn = Connection(self.host, self.port, self._context(client_cert=False))
        try:
            result = await conn.request("POST", wire.ENROLL_PATH, request.to_bytes())
        finally:
            conn.close()
        if result.status == 200:
            self._adopt(enrolment.EnrollResponse.from_bytes(result.body))
        return result

    def _adopt(self, response: enrolment.EnrollResponse) -> None:
        self.cert_pem = response.certificate_pem
        self.signing_keys = response.signing_keys
        self.gateway_ca = enrolment.bundle(response.gateway_cas)
        self.close()
        self._conn = None

    async def renew(self) -> HttpResult:
        key = ec.generate_private_key(ec.SECP256R1())
        body = enrolment.RenewRequest(make_csr(key, self.namespace, self.name)).to_bytes()
        result = await self.call("POST", wire.RENEW_PATH, body)
        if result.status == 200:
            self.key = key
            self._adopt(enrolment.EnrollResponse.from_bytes(result.body))
        return result

    # -- desired state and reports -------------------------------------------------
    async def poll(self, *, wait: float = 60.0, have: int | None = -1) -> HttpResult:
        """One long-poll; ``have=-1`` means the held version (none: ask for it at once).
        A 200 document is verified and held."""
        if have == -1:
            have = self.held.version if self.held is not None else None
        query = f"wait={wait:g}" + (f"&have={have}" if have is not None else "")
        result = await self.call(
            "GET",
            f"{wire.DESIRED_PATH}?{query}",
            headers={wire.INSTANCE_HEADER: self.instance_id},
            timeout=wait + 30,
        )
        if result.status in (200, 304):
            self.polls_ok += 1
            self.last_ok_at = time.monotonic()
        if result.status == 200:
            poll = desired.PollResponse.from_bytes(result.body)
            self.held = desired.accept(
                poll.desired,
                dsse.TrustedKeys.from_pems(self.signing_keys),
                namespace=self.namespace,
                device=self.name,
                held=self.held,
                now=datetime.datetime.now(datetime.UTC),
            )
            self.documents += 1
            self.last_document_at = time.monotonic()
        return result

    def snapshot(self) -> report.Report:
        self.seq += 1
        workloads = tuple(
            report.WorkloadStatus(
                w.name,
                w.version,
                w.manifest_digest,
                "Healthy" if self.healthy else "Unhealthy",
                w.config_version,
                report.WorkloadMetrics(requests=self.seq, errors=0, p95_latency_ms=3.0),
            )
            for w in (self.held.workloads if self.held else ())
        )
        return report.Report(
            seq=self.seq,
            time=wire.format_time(datetime.datetime.now(datetime.UTC)),
            instance_id=self.instance_id,
            desired_version=self.held.version if self.held else None,
            facts=report.Facts(architecture=self.platform.split("/")[1], agent_version="sim"),
            workloads=workloads,
        )

    async def report(self, *reports: report.Report) -> HttpResult:
        batch = report.ReportBatch(reports or (self.snapshot(),))
        result = await self.call("POST", wire.REPORTS_PATH, batch.to_bytes())
        if result.status == 200:
            self.acked = report.Ack.from_bytes(result.body).acked
        return result

    async def run(self, stop: asyncio.Event, *, wait: float = 60.0) -> None:
        """The agent's loop, simulated: long-poll; on a new document report it applied;
        on a connection failure back off with jitter and reconnect."""
        try:
            await self._loop(stop, wait)
        finally:
            self.close()

    async def _loop(self, stop: asyncio.Event, wait: float) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                result = await self.poll(wait=wait)
                if result.status == 200:
                    await self.report()
                elif result.status not in (304,):
                    await asyncio.sleep(min(backoff, 5.0) * random.uniform(0.5, 1.5))  # noqa: S311
                    backoff *= 2
                    continue
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:  # any failure: reconnect, as an agent does
                self.failures += 1
                self.close()
                await asyncio.sleep(min(backoff, 5.0) * random.uniform(0.5, 1.5))  # noqa: S311
                backoff *= 2
