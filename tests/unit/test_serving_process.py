"""The inference server as a process: configuration from the environment, and
``python -m edgefleet.serving`` serving the tiny model and stopping on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from edgefleet.serving import ConfigError, ServingConfig
from edgefleet.testing.models import ModelFixture
from edgefleet.testing.procs import Service, free_port, wait_until
from tests.unit.serving_helpers import post, request


def test_config_from_env() -> None:
    config = ServingConfig.from_env(
        {
            "EDGEFLEET_PORT": "9000",
            "EDGEFLEET_MODEL_SHA256": "sha256:" + "AB" * 32,
            "EDGEFLEET_THREADS": "2",
        }
    )
    assert (config.port, config.model_sha256, config.threads, config.bind) == (
        9000,
        "ab" * 32,
        2,
        "0.0.0.0",  # noqa: S104 - the default for containers, checked here
    )
    with pytest.raises(ConfigError, match="EDGEFLEET_PORT='http' is not an integer"):
        ServingConfig.from_env({"EDGEFLEET_PORT": "http"})
    with pytest.raises(ConfigError, match="EDGEFLEET_MODEL_SHA256"):
        ServingConfig.from_env({"EDGEFLEET_MODEL_SHA256": "abc"})


def test_python_m_entry_point_serves_and_stops_on_sigterm(
    tmp_path: Path, tiny: ModelFixture
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "EDGEFLEET_MODEL_PATH": str(tiny.path),
        "EDGEFLEET_MODEL_SHA256": tiny.sha256,
        "EDGEFLEET_PORT": str(port),
        "EDGEFLEET_BIND": "127.0.0.1",
        "EDGEFLEET_THREADS": "1",
    }
    started = time.monotonic()
    service = Service(
        "serving", [sys.executable, "-m", "edgefleet.serving"], tmp_path / "log", env=env
    )
    try:

        def healthy() -> bool:
            try:
                return request(port, "GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_until(healthy, timeout=8, what="serving /healthz 200", alive=service.check_alive)
        cold_start = time.monotonic() - started
        code, body = post(port, tiny.probe_request())
        assert code == 200
        assert tiny.matches(body["outputs"])
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(5) == 0
    finally:
        service.stop()
    events = [json.loads(line)["event"] for line in service.log_path.read_text().splitlines()]
    assert events[0] == "listening"
    assert events[-2:] == ["signal", "stopped"]
    print(f"cold start to healthy: {cold_start:.3f}s")
