"""Rollouts end to end with the operator SIGKILLed again and again mid-rollout: every
device is still assigned exactly once (desiredRevision 1). The real API server, the
operator as its own process (rollout controller only) and 200 fake-fleet devices."""

from __future__ import annotations

import pytest

from edgefleet.testing.procs import wait_until
from tests.e2e import rollout_helpers as h


@pytest.mark.timeout(400)
def test_operator_sigkilled_mid_rollout_assigns_every_device_once(
    crds, namespace, api, env, tmp_path
):
    import random

    h.put_model(api, namespace, "2.0.0")
    # Kill points: random numbers of assigned devices, from the API server's view. The last
    # batch (10% of 200, written up to 32 at once) jumps from ~180 to 200, so a kill aimed
    # above 170 may land after the rollout is fully assigned: the targets stay below it.
    seed = random.randrange(2**32)  # noqa: S311
    targets = sorted(random.Random(seed).sample(range(5, 170), 4))  # noqa: S311
    kills: list[tuple[int, int]] = []

    def assigned() -> int:
        return sum(h.desired_version(d) == "2.0.0" for d in h.devices(api, namespace))

    with h.fleet(crds, namespace, 150, 50, delay=0.3), h.operator_process(env, tmp_path) as op:
        steps = [{"setWeight": 25}, {"setWeight": 50}]
        h.apply_rollout(crds, namespace, "kill", maxUnavailable="10%", canary={"steps": steps})
        for target in targets:
            wait_until(
                lambda t=target: assigned() >= t,
                timeout=120,
                what=f"{target} assigned",
                interval=0.02,
                alive=op.service.check_alive,
            )
            op.kill()
            kills.append((target, assigned()))
            op.start()
        obj = h.wait_rollout(
            api,
            namespace,
            "kill",
            lambda o: o["status"]["phase"] == "Completed",
            "done",
            op,
            timeout=240,
        )
        replay = f"kills (target, assigned after the kill) {kills}, seed {seed}"
        assert obj["status"]["counts"]["healthy"] == 200, replay
        devs = h.devices(api, namespace)
        assert all(h.desired_version(d) == "2.0.0" for d in devs), replay
        assert {d["status"]["desiredRevision"] for d in devs} == {1}, replay
        assert op.starts == 5
        assert all(n < 200 for _, n in kills), f"every kill lands mid-rollout: {replay}"
