"""The agent against the real gateway, API server and TLS registry: certificate renewal,
then revocation (the agent is refused and says how to re-enrol) and the way back with a
new token, the workload running throughout."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from edgefleet.testing.procs import wait_until
from edgefleet.testing.tinyimage import push_image
from edgefleet_node.agent import cli, store
from edgefleet_node.agent import config as agent_config
from edgefleet_node.agent.simulated import SimulatedRuntime
from edgefleet_node.protocol import enroll
from tests.integration.agent_fixtures import (
    PLATFORM,
    Running,
    connection,
    enrol,
    set_desired,
)
from tests.integration.gateway_fixtures import Fleet


def test_renewal_then_revocation_and_the_way_back(
    agent_fleet, agent_gateway, registry_client, image_signing_key, tmp_path
) -> None:
    """Renewal (forced due: the gateway's shortest lifetime is 10 minutes), then the
    certificate refused (revoked; an expired one takes the same way back, tested
    against the stand-in in the unit tests), then a new token: the workload stays."""
    from edgefleet_node.agent import identity

    image = push_image(
        registry_client,
        f"edgefleet/models/{agent_fleet.namespace}/cam",
        image_signing_key,
        platforms=(PLATFORM,),
    )
    url = f"https://127.0.0.1:{agent_gateway.port}"
    state = enrol(agent_fleet, "dev-5", url, tmp_path / "s")
    first = identity.load(state)
    doc = store.read_json(state.identity / "identity.json") or {}
    doc["renewAt"] = time.time() - 1  # due now
    store.write_json(state.identity / "identity.json", doc, 0o600)
    set_desired(agent_fleet, "dev-5", 1, image, "cam", "1.0.0")
    rt = SimulatedRuntime()
    with Running(state, rt):
        agent_fleet.wait_condition("dev-5", "Ready", "True", timeout=60)
        wait_until(
            lambda: identity.load(state).serial != first.serial,
            timeout=30,
            what="certificate renewed",
        )
        renewed = identity.load(state)
        assert renewed.renew_at > time.time()
        wait_until(
            lambda: _serial(agent_fleet, "dev-5") == renewed.serial,
            timeout=30,
            what="the gateway saw the renewed certificate in use",
        )
        (workload,) = rt.running()
        subprocess.run(
            [
                str(Path(sys.executable).parent / "edgefleet"),
                "device",
                "revoke",
                "dev-5",
                "-n",
                agent_fleet.namespace,
                "--kubeconfig",
                str(agent_fleet.cp.kubeconfig),
            ],
            check=True,
        )
        wait_until(
            lambda: (store.read_json(state.status) or {}).get("refused") is True,
            timeout=30,
            what="the agent sees the refusal",
        )
        shown = cli.status(agent_config.Config(state_dir=state.root))
        assert "edgefleet-node enroll" in shown["hint"]
        assert rt.running() == [workload]
        cli.enroll_device(
            agent_config.Config(state_dir=state.root, platform=PLATFORM),
            url,
            enroll.BootstrapToken.parse(agent_fleet.token("dev-5")),
        )
        wait_until(lambda: connection(state) == "Online", timeout=30, what="Online again")
        agent_fleet.wait_condition("dev-5", "Enrolled", "True", timeout=30)
        agent_fleet.wait_condition("dev-5", "Ready", "True", timeout=60)
        assert rt.running() == [workload]
        assert rt.started == [workload]  # never restarted


def _serial(fleet: Fleet, device: str) -> int:
    enrollment = (fleet.get(device).get("status") or {}).get("enrollment") or {}
    return int(str(enrollment.get("certificateSerial") or "0"), 16)
