"""A registry token server for tests: the Docker/OCI Bearer token flow, for real.

The distribution server (``docker-registry``) configured with ``auth: token`` answers
401 with ``Www-Authenticate: Bearer realm=…,service=…,scope=…``; a client then asks
this server for a token (HTTP Basic with the test user), and this server returns an
ES256 JWT whose ``x5c`` header carries a certificate issued by its own CA — the CA the
registry trusts through ``rootcertbundle``. Tokens grant exactly the scopes requested
(pull, push) to the one known user, and nothing to anyone else.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from edgefleet.testing.pki import CertificateAuthority

__all__ = ["ISSUER", "SERVICE", "TokenServer"]

ISSUER = "edgefleet-test-token-issuer"
SERVICE = "edgefleet-test-registry"
_LIFETIME = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """An HTTPS token endpoint at ``realm`` for one user; start with ``with``."""

    def __init__(
        self, directory: Path, tls: CertificateAuthority, username: str, password: str
    ) -> None:
        self.username, self._password = username, password
        self.signing_ca = CertificateAuthority("edgefleet-token-signing-ca")
        issued = self.signing_ca.issue("edgefleet-token-signer", client=True)
        self._key = serialization.load_pem_private_key(issued.key_pem, password=None)
        cert = x509.load_pem_x509_certificate(issued.cert_pem)
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.rootcertbundle = self.signing_ca.write(directory, "token-signing-ca")
        crt, key = tls.issue("127.0.0.1", ip_addresses=("127.0.0.1",), server=True).write(
            directory, "token-server"
        )
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(crt), str(key))
        self.issued: list[dict[str, object]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.socket = self._context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="token-server"
        )

    @property
    def realm(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}/token"

    def __enter__(self) -> TokenServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _token(self, subject: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name:
                access.append(
                    {
                        "type": kind,
                        "name": name,
                        "actions": [a for a in actions.split(",") if a in ("pull", "push")],
                    }
                )
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "iat": now,
            "nbf": now - 5,
            "exp": now + _LIFETIME,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        header = {"typ": "JWT", "alg": "ES256", "x5c": self._x5c}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        assert isinstance(self._key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(
            self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        self.issued.append(claims)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self
        expected = (
            "Basic " + base64.b64encode(f"{self.username}:{self._password}".encode()).decode()
        )

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path != "/token" or query.get("service") != [SERVICE]:
                    self.send_error(404)
                    return
                if not secrets.compare_digest(self.headers.get("Authorization", ""), expected):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="edgefleet-token"')
                    self.end_headers()
                    return
                token = server._token(server.username, query.get("scope", []))
                body = json.dumps(
                    {"token": token, "access_token": token, "expires_in": _LIFETIME}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
