"""A real OCI registry on loopback: Debian's distribution server behind TLS.

:class:`LocalRegistry` starts ``/usr/bin/docker-registry serve config.yml`` (package
``docker-registry``, distribution 2.8) on a free ``127.0.0.1`` port with a serving
certificate for ``127.0.0.1`` and ``localhost`` from a fresh
:class:`~edgefleet.testing.pki.CertificateAuthority`, filesystem storage (a temporary
directory, or a given one to keep blobs between runs), deletes enabled, and optional
htpasswd basic auth. It waits until ``GET /v2/`` answers (200, or 401 with auth),
retries on a new port when the address was taken, and always tears down.
Authentication (credentials, htpasswd, token auth) is in
:mod:`edgefleet.testing.registry_auth`; finding the server binary in
:mod:`edgefleet.testing.registry_prereqs`.

Fixture factories, plain generators so this package needs no pytest: they raise
:class:`unittest.SkipTest` (which pytest reports as a skip) when the server is not
installed. Wire them in a ``conftest.py``::

    registry = pytest.fixture(registry_fixture, name="registry", scope="session")
    auth_registry = pytest.fixture(auth_registry_fixture, name="auth_registry")
"""

from __future__ import annotations

import secrets
import shutil
import ssl
import tempfile
import unittest
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

from edgefleet.testing.lifecycle import Harness
from edgefleet.testing.pki import CertificateAuthority
from edgefleet.testing.procs import Service, ServiceError, free_port, wait_until
from edgefleet.testing.registry_auth import Credentials, auth_config, bcrypt_htpasswd_line
from edgefleet.testing.registry_prereqs import find_registry_binary, registry_unavailable
from edgefleet.testing.tokenserver import TokenServer

__all__ = [
    "Credentials",
    "LocalRegistry",
    "auth_registry_fixture",
    "bcrypt_htpasswd_line",
    "find_registry_binary",
    "registry_fixture",
    "registry_unavailable",
]

_START_ATTEMPTS = 3


class LocalRegistry(Harness):
    """``docker-registry`` on ``127.0.0.1:<free port>`` with TLS and optional basic auth.

    ``auth=True`` makes a user ``edgefleet`` with a random password; pass
    :class:`Credentials` to choose them. ``storage_dir`` keeps blobs (a cache between
    runs); by default they live in the instance's temporary directory.
    """

    def __init__(
        self,
        *,
        auth: bool | Credentials = False,
        token_auth: bool = False,
        storage_dir: Path | None = None,
        ca: CertificateAuthority | None = None,
        binary: str | None = None,
        startup_timeout: float = 30.0,
        keep_dir: bool = False,
        extra_ips: tuple[str, ...] = (),
    ) -> None:
        """``extra_ips``: more addresses in the serving certificate (the one-node
        cluster's pods reach the registry at the node address)."""
        self.extra_ips = extra_ips
        found = binary or find_registry_binary()
        if found is None:
            raise ServiceError(registry_unavailable() or "docker-registry not found")
        self.binary = found
        self.dir = Path(tempfile.mkdtemp(prefix="edgefleet-registry-"))
        self.dir.chmod(0o700)
        self.storage_dir = storage_dir or self.dir / "storage"
        self.ca = ca or CertificateAuthority("edgefleet-registry-ca")
        self.ca_path = self.ca.write(self.dir, "ca")
        if token_auth and not auth:
            auth = True  # the token server authenticates the user; it needs credentials
        if isinstance(auth, Credentials):
            self.credentials: Credentials | None = auth
        elif auth:
            self.credentials = Credentials("edgefleet", secrets.token_urlsafe(18))
        else:
            self.credentials = None
        self.token_server: TokenServer | None = None
        if token_auth and self.credentials is not None:
            self.token_server = TokenServer(
                self.dir, self.ca, self.credentials.username, self.credentials.password
            )
        self.port = 0
        self._timeout = startup_timeout
        self._keep_dir = keep_dir
        self._service: Service | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the registry part of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this registry's CA."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def log_tail(self, lines: int = 40) -> str:
        return self._service.log_tail(lines) if self._service else ""

    def _write_config(self) -> Path:
        cert, key = self.ca.issue(
            "127.0.0.1",
            dns_names=("localhost",),
            ip_addresses=("127.0.0.1", *self.extra_ips),
            server=True,
        ).write(self.dir, "serving")
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": self.host,
                "secret": secrets.token_hex(16),
                "tls": {"certificate": str(cert), "key": str(key)},
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        auth = auth_config(self.dir, self.credentials, self.token_server)
        if auth is not None:
            config["auth"] = auth
        path = self.dir / "config.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=True))
        return path

    def _answers(self) -> bool:
        url = self.url + "/v2/"  # https, built here
        try:
            with urllib.request.urlopen(url, context=self.ssl_context(), timeout=2) as r:  # noqa: S310
                return int(r.status) == 200
        except urllib.error.HTTPError as e:
            return e.code == 401 and self.credentials is not None
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> LocalRegistry:
        """Start on a free port; retry on a new one when the address was taken."""
        if self.token_server is not None:
            self.token_server.__enter__()
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_port()
            config = self._write_config()
            service = Service(
                "docker-registry",
                [self.binary, "serve", str(config)],
                self.dir / f"registry-{attempt}.log",
            )
            self._service = service
            try:
                wait_until(
                    self._answers,
                    timeout=self._timeout,
                    what=f"docker-registry on {self.url}/v2/",
                    alive=service.check_alive,
                )
                return self
            except ServiceError:
                service.stop()
                if "address already in use" in service.log_tail() and attempt < _START_ATTEMPTS:
                    continue
                raise
        raise ServiceError("docker-registry did not start")  # pragma: no cover

    def interrupt(self) -> None:
        """Stop the server process only (an outage): port, config and storage stay."""
        if self._service is not None:
            self._service.stop()

    def resume(self) -> None:
        """Start the server again after :meth:`interrupt`, on the same port and storage."""
        assert self._service is not None, "resume() follows interrupt()"
        config = self.dir / "config.yml"
        service = Service(
            "docker-registry",
            [self.binary, "serve", str(config)],
            self.dir / "registry-resumed.log",
        )
        self._service = service
        wait_until(
            self._answers,
            timeout=self._timeout,
            what=f"docker-registry on {self.url}/v2/ again",
            alive=service.check_alive,
        )

    def stop(self) -> None:
        """Stop the server and remove its directory (unless ``keep_dir``); idempotent."""
        if self._service is not None:
            self._service.stop()
            self._service = None
        if self.token_server is not None:
            self.token_server.__exit__(None, None, None)
            self.token_server = None
        if not self._keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def registry_fixture() -> Iterator[LocalRegistry]:
    """A TLS registry without auth for one fixture scope; skips when not installed."""
    if (why := registry_unavailable()) is not None:
        raise unittest.SkipTest(why)
    # Pods on the tests' one-node cluster reach it at the node address (10.88.0.1).
    with LocalRegistry(extra_ips=("10.88.0.1",)) as registry:
        yield registry


def auth_registry_fixture() -> Iterator[LocalRegistry]:
    """A TLS registry with basic auth (``.credentials``: random password); skips likewise."""
    if (why := registry_unavailable(auth=True)) is not None:
        raise unittest.SkipTest(why)
    with LocalRegistry(auth=True) as registry:
        yield registry
