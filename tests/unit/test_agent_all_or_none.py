"""Several workloads in one document activate all or none: whichever step fails for
one of them (signature, download, preflight, host device, probe), the other is never
started, the previous set keeps running, and ``UpdateFailed`` names the workload."""

from __future__ import annotations

import pytest

from edgefleet_node.agent import pull
from edgefleet_node.agent.simulated import Behaviour, SimulatedRuntime
from tests.unit.agent_gateway_fake import FakeGateway
from tests.unit.agent_helpers import running_agent, wait_for

REPO = "edgefleet/models/fleet/m"
BIG = 60_000  # the failing workload's layer; the other's is 1000 bytes


def _running(rt: SimulatedRuntime) -> dict[str, str]:
    return {i.workload: i.manifest_digest for i in rt.running()}


def _failed(gw: FakeGateway) -> tuple[str, str, str] | None:
    if not gw.reports:
        return None
    for c in gw.reports[max(gw.reports)].conditions:
        if c.type == "UpdateFailed":
            return c.status, c.reason, c.message
    return None


def _failed_with(gw: FakeGateway, reason: str) -> tuple[str, str, str] | None:
    failed = _failed(gw)
    return failed if failed is not None and failed[1] == reason else None


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("signature", "SignatureInvalid"),
        ("signed-other-digest", "SignatureInvalid"),
        ("corrupt-blob", "BlobDigestMismatch"),
        ("disk", "InsufficientDisk"),
        ("memory", "InsufficientMemory"),
        ("device-missing", "DeviceMissing"),
        ("probe", "ProbeFailed"),
        ("exits", "Exited"),
    ],
)
def test_one_failing_workload_keeps_the_whole_previous_set(gw, state, fault, reason) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    a1, b1 = gw.add_image(REPO, [1000], seed=1), gw.add_image(REPO, [1000], seed=2)
    a2 = gw.add_image(REPO, [1000], seed=3)
    kwargs: dict[str, object] = {}
    if fault == "signature":
        b2 = gw.add_image(REPO, [BIG], seed=4, sign_key=ec.generate_private_key(ec.SECP256R1()))
    elif fault == "signed-other-digest":
        b2 = gw.add_image(REPO, [BIG], seed=4, sign_digest=b1.manifest.digest)
    else:
        b2 = gw.add_image(REPO, [BIG], seed=4)
    if fault == "corrupt-blob":
        gw.faults.corrupt.add(b2.layers[0].digest)
    elif fault == "device-missing":
        kwargs["host_devices"] = ("/dev/edgefleet-test-no-such-camera",)
    behaviour = Behaviour(
        fail_probe={b2.manifest.digest} if fault == "probe" else set(),
        exit_on_start={b2.manifest.digest} if fault == "exits" else set(),
    )
    rt = SimulatedRuntime(behaviour)
    gw.publish((a1.workload("detector"), b1.workload("counter")))
    with running_agent(state, rt) as agent:
        before = {"detector": a1.manifest.digest, "counter": b1.manifest.digest}
        wait_for("v1", lambda: _running(rt) == before)
        wait_for("v1 committed", lambda: agent.activator.version == gw.version)
        if fault == "disk":  # room for the detector's 1000 bytes, not the counter's
            agent.activator.measure = lambda: pull.Resources(BIG // 2, None)
        elif fault == "memory":
            agent.activator.measure = lambda: pull.Resources(10 * BIG, BIG // 2)
        gw.publish(
            (a2.workload("detector", version="2"), b2.workload("counter", version="2", **kwargs))
        )
        failed = wait_for(reason, lambda: _failed_with(gw, reason))
        assert failed is not None
        assert failed[0] == "True"
        assert "counter" in failed[2], failed
        assert _running(rt) == before
        started = {i.manifest_digest for i in rt.started}
        if fault in ("probe", "exits"):
            assert a2.manifest.digest in started  # started beside the old one, then stopped
        else:
            assert a2.manifest.digest not in started, "nothing starts before all are ready"
            assert a2.manifest.digest not in rt.images()
        assert b2.manifest.digest not in started or fault in ("probe", "exits")
        assert agent.activator.version != gw.version
        assert {n: c.instance.manifest_digest for n, c in agent.activator.current.items()} == (
            before
        )
    if fault not in ("probe", "exits"):
        assert not state.blob(b2.layers[0].digest).exists(), "nothing of the failed one is kept"
    # (An image that failed its probe was complete and verified: it stays, for a retry
    # without a download, until the next successful activation collects it.)
    assert not list(state.blobs.glob("*.partial"))
