"""Gateway configuration from ``EDGEFLEET_*`` environment variables (the Helm chart sets
them). Every value is validated at start-up; a bad one is a :class:`ConfigError` naming
the variable (``edgefleet gateway`` exits with code 2). ``docs/gateway.md`` has the table.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet.api.meta import parse_duration

__all__ = ["ConfigError", "GatewayConfig", "Limits"]

_REPLICA = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?")


class ConfigError(ValueError):
    """An ``EDGEFLEET_*`` setting is missing or wrong."""


@dataclass(frozen=True)
class Limits:
    """Admission control: what one replica accepts at once, and how long it waits."""

    max_connections: int = 0  # 0: what the open-file limit allows (accept.connection_cap)
    max_handshakes: int = 256  # TLS handshakes in flight; beyond, the kernel queues
    max_inflight: int = 256  # requests being worked on (long-polls not counted)
    max_longpolls: int = 16000
    max_poll_wait: float = 120.0
    handshake_timeout: float = 10.0  # TLS handshake
    body_timeout: float = 10.0  # to receive a request body
    idle_timeout: float = 75.0  # keep-alive between requests
    retry_after: int = 5  # seconds, on 503


@dataclass(frozen=True)
class GatewayConfig:
    namespace: str
    host: str = "0.0.0.0"  # noqa: S104 -- a gateway listens for devices
    port: int = 8443
    names: tuple[str, ...] = ("localhost", "127.0.0.1")
    replica: str = "gateway"
    watch_namespaces: tuple[str, ...] = ()
    registry_url: str | None = None
    registry_ca: str | None = None
    registry_username: str | None = None
    registry_password: str | None = field(default=None, repr=False)
    document_ttl: datetime.timedelta = datetime.timedelta(hours=24)
    cert_lifetime: datetime.timedelta = datetime.timedelta(days=7)
    online_grace: datetime.timedelta = datetime.timedelta(seconds=150)
    last_seen_interval: datetime.timedelta = datetime.timedelta(hours=4)
    write_rate: float = 20.0
    lease_seconds: int = 30
    pki_reload: float = 60.0
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> GatewayConfig:
        def get(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        def duration(name: str, default: str) -> datetime.timedelta:
            text = get(name, default)
            try:
                return datetime.timedelta(seconds=parse_duration(text))
            except ValueError as exc:
                raise ConfigError(f"{name}={text!r} is not a duration like 90s or 4h") from exc

        def number(name: str, default: float, lo: float, hi: float) -> float:
            text = get(name, str(default))
            try:
                value = float(text)
            except ValueError as exc:
                raise ConfigError(f"{name}={text!r} is not a number") from exc
            if not lo <= value <= hi:
                raise ConfigError(f"{name}={text} must be between {lo:g} and {hi:g}")
            return value

        namespace = get("EDGEFLEET_NAMESPACE", "")
        if not namespace:
            raise ConfigError("EDGEFLEET_NAMESPACE must be set")
        listen = get("EDGEFLEET_GATEWAY_LISTEN", "0.0.0.0:8443")
        host, _, port_text = listen.rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"EDGEFLEET_GATEWAY_LISTEN={listen!r} must be HOST:PORT")
        names = tuple(n.strip() for n in get("EDGEFLEET_GATEWAY_NAMES", "").split(",") if n.strip())
        replica = get("EDGEFLEET_GATEWAY_REPLICA", socket.gethostname().lower())
        if _REPLICA.fullmatch(replica) is None:
            raise ConfigError(f"EDGEFLEET_GATEWAY_REPLICA={replica!r} must be a DNS label")
        registry = env.get("EDGEFLEET_REGISTRY_URL") or None
        if registry is not None and not registry.startswith("https://"):
            raise ConfigError(f"EDGEFLEET_REGISTRY_URL must be an https:// URL, not {registry!r}")
        password = None
        if env.get("EDGEFLEET_REGISTRY_PASSWORD_FILE"):
            path = Path(env["EDGEFLEET_REGISTRY_PASSWORD_FILE"])
            try:
                password = path.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"EDGEFLEET_REGISTRY_PASSWORD_FILE: {exc}") from exc
        grace = duration("EDGEFLEET_GATEWAY_ONLINE_GRACE", "150s")
        limits = Limits(
            max_connections=int(number("EDGEFLEET_GATEWAY_MAX_CONNECTIONS", 0, 0, 1e6)),
            max_handshakes=int(number("EDGEFLEET_GATEWAY_MAX_HANDSHAKES", 256, 1, 1e5)),
            max_inflight=int(number("EDGEFLEET_GATEWAY_MAX_INFLIGHT", 256, 1, 1e5)),
            max_longpolls=int(number("EDGEFLEET_GATEWAY_MAX_LONGPOLLS", 16000, 1, 1e6)),
            handshake_timeout=number("EDGEFLEET_GATEWAY_HANDSHAKE_TIMEOUT", 10, 1, 300),
            body_timeout=number("EDGEFLEET_GATEWAY_BODY_TIMEOUT", 10, 1, 300),
            idle_timeout=number("EDGEFLEET_GATEWAY_IDLE_TIMEOUT", 75, 1, 3600),
        )
        if 0 < limits.max_connections < 16:
            raise ConfigError("EDGEFLEET_GATEWAY_MAX_CONNECTIONS must be 0 (automatic) or >= 16")
        if grace.total_seconds() <= limits.max_poll_wait:
            raise ConfigError(
                "EDGEFLEET_GATEWAY_ONLINE_GRACE must exceed the longest long-poll (120s)"
            )
        return cls(
            namespace=namespace,
            host=host.strip("[]"),
            port=int(port_text),
            names=names or ("localhost", "127.0.0.1"),
            replica=replica,
            watch_namespaces=tuple(
                n for n in get("EDGEFLEET_WATCH_NAMESPACES", "").split(",") if n
            ),
            registry_url=registry,
            registry_ca=env.get("EDGEFLEET_REGISTRY_CA") or None,
            registry_username=env.get("EDGEFLEET_REGISTRY_USERNAME") or None,
            registry_password=password,
            document_ttl=duration("EDGEFLEET_GATEWAY_DOCUMENT_TTL", "24h"),
            cert_lifetime=duration("EDGEFLEET_GATEWAY_CERT_LIFETIME", "168h"),
            online_grace=grace,
            last_seen_interval=duration("EDGEFLEET_GATEWAY_LAST_SEEN_INTERVAL", "4h"),
            write_rate=number("EDGEFLEET_GATEWAY_WRITE_RATE", 20, 0.1, 1000),
            lease_seconds=int(number("EDGEFLEET_GATEWAY_LEASE_SECONDS", 30, 5, 600)),
            pki_reload=number("EDGEFLEET_GATEWAY_PKI_RELOAD_SECONDS", 60, 1, 86400),
            limits=limits,
        )
