"""The fake gateway's HTTP handler: the routes the agent uses (CA, enrol, renew,
long-poll, reports, ``/v2/`` manifests and blobs with Range), each honouring the
switchable :class:`~tests.unit.agent_gateway_fake.Faults`.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from edgefleet_node.protocol import desired, enroll, report, wire
from tests.unit import agent_gateway_pki as pki

if TYPE_CHECKING:
    from tests.unit.agent_gateway_fake import FakeGateway

__all__ = ["handler"]

_BLOB = re.compile(r"/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})")
_MANIFEST = re.compile(r"/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)")


def handler(gw: FakeGateway) -> type[BaseHTTPRequestHandler]:
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
                return self._send(200, pki.pem(gw.ca_cert))
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
