"""The agent process (``edgefleet-node run``) against the real gateway, API server and TLS
registry, SIGKILLed again and again (mid-download, mid state write, mid report): it
restarts cleanly every time and ends Ready without re-running or losing its workload."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
from pathlib import Path

from edgefleet.testing.procs import wait_until
from edgefleet.testing.tinyimage import push_image
from edgefleet_node.agent import store
from tests.integration.agent_fixtures import (
    PLATFORM,
    enrol,
    set_desired,
)


def test_the_agent_sigkilled_repeatedly_restarts_cleanly(
    agent_fleet, agent_gateway, registry_client, image_signing_key, tmp_path
) -> None:
    """The agent process killed with SIGKILL at arbitrary moments (mid-download, mid
    state write, mid report) restarts every time and ends Ready, never re-running or
    losing the workload it committed."""
    image = push_image(
        registry_client,
        f"edgefleet/models/{agent_fleet.namespace}/cam",
        image_signing_key,
        platforms=(PLATFORM,),
        big_layer_bytes=48 * 1024 * 1024,
    )
    state = enrol(agent_fleet, "dev-8", f"https://127.0.0.1:{agent_gateway.port}", tmp_path / "s")
    set_desired(agent_fleet, "dev-8", 1, image, "cam", "1")
    exe = str(Path(sys.executable).parent / "edgefleet-node")
    argv = [
        exe,
        "--state-dir",
        str(state.root),
        "--log-level",
        "warning",
        "run",
        "--runtime",
        "simulated",
        "--poll-wait",
        "5",
        "--report-interval",
        "1",
    ]
    big = state.blob(image.big_layer or "")
    partial = big.with_name(big.name + ".partial")
    kills = 0
    for stage in ("downloading", "running", "running", "running"):
        proc = subprocess.Popen(argv)
        try:
            if stage == "downloading":
                wait_until(
                    lambda: partial.exists() and partial.stat().st_size > 0,
                    timeout=60,
                    what="download under way",
                    interval=0.005,
                )
            else:
                seq = _queued_seq(state)
                wait_until(
                    functools.partial(_seq_above, state, seq),
                    timeout=30,
                    what="a report written",
                    interval=0.005,
                )
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
    proc = subprocess.Popen(argv)
    try:
        agent_fleet.wait_condition("dev-8", "Ready", "True", timeout=120)
        running = json.loads((state.root / "simulated.json").read_text())["running"]
        assert [r["manifest_digest"] for r in running] == [image.manifests[PLATFORM]]
        assert big.exists()
        for path in (state.runtime, state.desired, state.status, state.identity / "identity.json"):
            assert path.exists()
            json.loads(path.read_text())  # every state file loads
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # SIGTERM: a clean stop
    assert kills == 4


def _seq_above(state: store.StateDir, seq: int) -> bool:
    return _queued_seq(state) > seq


def _queued_seq(state: store.StateDir) -> int:
    meta = store.read_json(state.reports / "meta.json") or {}
    return int(meta.get("nextSeq", 0))
