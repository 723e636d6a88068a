"""Operator configuration from EDGEFLEET_* variables: defaults, and clear errors."""

from __future__ import annotations

import pytest

from edgefleet import cli
from edgefleet.handlers.operator import ConfigError, OperatorConfig

GOOD = {
    "EDGEFLEET_NAMESPACE": "edgefleet-system",
    "EDGEFLEET_REGISTRY_URL": "https://registry.example.com",
}


def test_defaults():
    cfg = OperatorConfig.from_env(GOOD)
    assert (cfg.base_repository, cfg.base_reference) == ("edgefleet/base", "bookworm")
    assert cfg.signing_secret == "edgefleet-signing-key"
    assert cfg.watch_namespaces == ()
    assert cfg.max_concurrent_builds == 2
    assert cfg.drift_interval == 600.0


def test_the_drift_interval_is_configurable():
    cfg = OperatorConfig.from_env({**GOOD, "EDGEFLEET_DRIFT_INTERVAL_SECONDS": "2.5"})
    assert cfg.drift_interval == 2.5


def test_password_comes_from_a_file(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    cfg = OperatorConfig.from_env(
        {
            **GOOD,
            "EDGEFLEET_REGISTRY_USERNAME": "bot",
            "EDGEFLEET_REGISTRY_PASSWORD_FILE": str(secret),
            "EDGEFLEET_WATCH_NAMESPACES": "a,b",
        }
    )
    assert (cfg.registry_username, cfg.registry_password) == ("bot", "s3cret")
    assert cfg.watch_namespaces == ("a", "b")


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"EDGEFLEET_NAMESPACE": ""}, "EDGEFLEET_NAMESPACE"),
        ({"EDGEFLEET_REGISTRY_URL": "http://registry.example.com"}, "EDGEFLEET_REGISTRY_URL"),
        ({"EDGEFLEET_MAX_CONCURRENT_BUILDS": "many"}, "EDGEFLEET_MAX_CONCURRENT_BUILDS"),
        ({"EDGEFLEET_MAX_CONCURRENT_BUILDS": "0"}, "EDGEFLEET_MAX_CONCURRENT_BUILDS"),
        ({"EDGEFLEET_DRIFT_INTERVAL_SECONDS": "soon"}, "EDGEFLEET_DRIFT_INTERVAL_SECONDS"),
        ({"EDGEFLEET_DRIFT_INTERVAL_SECONDS": "0"}, "EDGEFLEET_DRIFT_INTERVAL_SECONDS"),
        ({"EDGEFLEET_DRIFT_INTERVAL_SECONDS": "0.5"}, "EDGEFLEET_DRIFT_INTERVAL_SECONDS"),
        ({"EDGEFLEET_DRIFT_INTERVAL_SECONDS": "86401"}, "EDGEFLEET_DRIFT_INTERVAL_SECONDS"),
        ({"EDGEFLEET_DRIFT_INTERVAL_SECONDS": "nan"}, "EDGEFLEET_DRIFT_INTERVAL_SECONDS"),
        ({"EDGEFLEET_DRIFT_INTERVAL_SECONDS": "inf"}, "EDGEFLEET_DRIFT_INTERVAL_SECONDS"),
        ({"EDGEFLEET_DRIFT_INTERVAL_SECONDS": "-5"}, "EDGEFLEET_DRIFT_INTERVAL_SECONDS"),
    ],
)
def test_bad_values_name_the_variable(change, names):
    with pytest.raises(ConfigError, match=names):
        OperatorConfig.from_env({**GOOD, **change})


def test_cli_exits_2_on_bad_configuration(monkeypatch):
    monkeypatch.delenv("EDGEFLEET_NAMESPACE", raising=False)
    monkeypatch.setenv("EDGEFLEET_REGISTRY_URL", "https://registry.example.com")
    assert cli.main(["--json-logs", "operator"]) == 2
