"""Rollouts through the real device path: the operator process (rollout controller), a
real gateway replica (mTLS, signed desired-state documents, reports → EdgeDevice
status) and enrolled simulated agents (edgefleet.testing.simdevice) that long-poll,
verify the documents and report what they hold. No fake fleet: the controller reads
what the gateway wrote."""

from __future__ import annotations

import asyncio
import threading

import pytest

from edgefleet.testing.procs import wait_until
from tests.e2e import rollout_helpers as h


@pytest.fixture
def sims(fleet):
    """12 enrolled devices (8 amd64, 4 arm64), their agent loops running in a thread."""
    devices = [fleet.enrolled(f"amd-{i:03d}", "linux/amd64") for i in range(8)]
    devices += [fleet.enrolled(f"arm-{i:03d}", "linux/arm64") for i in range(4)]
    for name in [s.name for s in devices]:
        fleet.cp.kubectl("label", "edgedevice", name, "-n", fleet.namespace, "site=berlin")
    stop: list[asyncio.Event] = []

    async def run_all() -> None:
        stop.append(asyncio.Event())
        await asyncio.gather(*(s.run(stop[0], wait=20) for s in devices))

    thread = threading.Thread(target=fleet.loop.run_until_complete, args=(run_all(),))
    thread.start()
    try:
        yield devices
    finally:
        wait_until(lambda: bool(stop), timeout=10, what="agent loops started")
        fleet.loop.call_soon_threadsafe(stop[0].set)
        thread.join(timeout=60)


@pytest.fixture
def operator(crds, registry, tmp_path):
    with h.operator_process(h.rollout_env(crds, registry), tmp_path) as op:
        yield op


def test_canary_through_the_gateway_then_a_failing_wave_rolls_back(crds, fleet, sims, operator):
    ns, api = fleet.namespace, h.objects(crds)
    h.put_model(api, ns, "2.0.0")
    h.apply_rollout(crds, ns, "gw", maxUnavailable="50%", canary={"steps": [{"setWeight": 25}]})
    obj = h.wait_rollout(
        api, ns, "gw", lambda o: o["status"].get("phase") == "Completed", "completed", operator
    )
    assert obj["status"]["counts"]["healthy"] == 12
    for dev in h.devices(api, ns):
        (cur,) = dev["status"]["current"]  # written by the gateway from the agent's report
        assert cur["imageDigest"] == h.digest("det", "2.0.0", dev["spec"]["platform"])
        assert cur["health"] == "Healthy"
        assert h.cond(dev, "Ready")["status"] == "True"
        assert dev["status"]["desiredRevision"] == 1
    # 3.0.0 fails its probe on every device: the first wave fails, the rollout aborts and
    # the wave goes back to 2.0.0; the others never receive 3.0.0.
    for sim in sims:
        sim.healthy = False
    h.put_model(api, ns, "3.0.0")
    h.apply_rollout(
        crds,
        ns,
        "bad",
        version="3.0.0",
        maxUnavailable="50%",
        canary={"steps": [{"setWeight": 25}, {"pause": {}}]},
    )
    obj = h.wait_rollout(
        api, ns, "bad", lambda o: o["status"].get("phase") == "Aborted", "aborted", operator
    )
    assert h.cond(obj, "Aborted")["reason"] == "FailureThresholdExceeded"
    for sim in sims:  # the agents went back to 2.0.0, which is healthy
        sim.healthy = True
    wait_until(
        lambda: all(h.desired_version(d) == "2.0.0" for d in h.devices(api, ns)),
        timeout=60,
        what="the wave rolled back to 2.0.0",
    )
    revisions = sorted(d["status"]["desiredRevision"] for d in h.devices(api, ns))
    assert revisions == [1] * 9 + [3] * 3
    # The finished canary is not aborted by what happened after it completed.
    assert h.get(api, ns, "rollouts", "gw")["status"]["phase"] == "Completed"
