"""Gateway settings: defaults, and a clear error naming the variable for bad values."""

from __future__ import annotations

import datetime

import pytest

from edgefleet.gateway.accept import connection_cap
from edgefleet.gateway.config import ConfigError, GatewayConfig

BASE = {"EDGEFLEET_NAMESPACE": "edgefleet-system", "EDGEFLEET_GATEWAY_REPLICA": "gw-0"}


def test_defaults():
    cfg = GatewayConfig.from_env(BASE)
    assert (cfg.host, cfg.port, cfg.replica) == ("0.0.0.0", 8443, "gw-0")  # noqa: S104
    assert cfg.last_seen_interval == datetime.timedelta(hours=4)
    assert cfg.online_grace == datetime.timedelta(seconds=150)
    assert cfg.document_ttl == datetime.timedelta(hours=24)
    assert cfg.registry_url is None


def test_settings_are_read():
    cfg = GatewayConfig.from_env(
        {
            **BASE,
            "EDGEFLEET_GATEWAY_LISTEN": "127.0.0.1:9443",
            "EDGEFLEET_GATEWAY_NAMES": "gw.example.com, 10.0.0.1",
            "EDGEFLEET_GATEWAY_LAST_SEEN_INTERVAL": "1h30m",
            "EDGEFLEET_GATEWAY_MAX_INFLIGHT": "64",
            "EDGEFLEET_WATCH_NAMESPACES": "a,b",
        }
    )
    assert (cfg.host, cfg.port) == ("127.0.0.1", 9443)
    assert cfg.names == ("gw.example.com", "10.0.0.1")
    assert cfg.last_seen_interval == datetime.timedelta(minutes=90)
    assert cfg.limits.max_inflight == 64
    assert cfg.watch_namespaces == ("a", "b")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"EDGEFLEET_NAMESPACE": ""}, "EDGEFLEET_NAMESPACE"),
        ({"EDGEFLEET_GATEWAY_LISTEN": "8443"}, "EDGEFLEET_GATEWAY_LISTEN"),
        ({"EDGEFLEET_GATEWAY_ONLINE_GRACE": "60s"}, "EDGEFLEET_GATEWAY_ONLINE_GRACE"),
        ({"EDGEFLEET_GATEWAY_ONLINE_GRACE": "soon"}, "EDGEFLEET_GATEWAY_ONLINE_GRACE"),
        ({"EDGEFLEET_GATEWAY_WRITE_RATE": "0"}, "EDGEFLEET_GATEWAY_WRITE_RATE"),
        ({"EDGEFLEET_REGISTRY_URL": "http://registry:5000"}, "EDGEFLEET_REGISTRY_URL"),
        ({"EDGEFLEET_GATEWAY_REPLICA": "Not A Label"}, "EDGEFLEET_GATEWAY_REPLICA"),
    ],
)
def test_bad_values_name_the_variable(env, names):
    with pytest.raises(ConfigError, match=names):
        GatewayConfig.from_env({**BASE, **env})


def test_admission_before_the_handshake_settings():
    cfg = GatewayConfig.from_env(BASE)
    assert (cfg.limits.max_connections, cfg.limits.max_handshakes) == (0, 256)  # 0: automatic
    cfg = GatewayConfig.from_env(
        {
            **BASE,
            "EDGEFLEET_GATEWAY_MAX_CONNECTIONS": "500",
            "EDGEFLEET_GATEWAY_MAX_HANDSHAKES": "8",
        }
    )
    assert (cfg.limits.max_connections, cfg.limits.max_handshakes) == (500, 8)
    with pytest.raises(ConfigError, match="EDGEFLEET_GATEWAY_MAX_CONNECTIONS"):
        GatewayConfig.from_env({**BASE, "EDGEFLEET_GATEWAY_MAX_CONNECTIONS": "5"})
    with pytest.raises(ConfigError, match="EDGEFLEET_GATEWAY_MAX_HANDSHAKES"):
        GatewayConfig.from_env({**BASE, "EDGEFLEET_GATEWAY_MAX_HANDSHAKES": "0"})


def test_the_connection_cap_follows_the_open_file_limit():
    # A tenth of the limit (at least 256 descriptors) is kept for everything else.
    assert connection_cap(0, nofile=20000) == 18000
    assert connection_cap(0, nofile=1024) == 768
    assert connection_cap(500, nofile=20000) == 500
    assert connection_cap(50000, nofile=20000) == 18000  # lowered, with a warning
