"""Keep the previous image for instant rollback, collect the rest; and a host device
unplugged under a running workload. The agent against the gateway stand-in with the
simulated runtime; the same against the real engine and gateway is in
tests/integration/test_agent_keep_collect.py."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import pytest

from edgefleet_node.agent import store
from edgefleet_node.agent.simulated import SimulatedRuntime
from tests.unit.agent_gateway_fake import FakeGateway, Image
from tests.unit.agent_helpers import FAST, running_agent, wait_for

REPO = "edgefleet/models/fleet/m"
LAYER = 200_000


def _running(rt: SimulatedRuntime) -> dict[str, str]:
    return {i.workload: i.manifest_digest for i in rt.running()}


def _runs(rt: SimulatedRuntime, wanted: dict[str, str]) -> bool:
    return _running(rt) == wanted


def _condition(gw: FakeGateway, type_: str) -> tuple[str, str, str] | None:
    if not gw.reports:
        return None
    for c in gw.reports[max(gw.reports)].conditions:
        if c.type == type_:
            return c.status, c.reason, c.message
    return None


def _with_reason(gw: FakeGateway, type_: str, reason: str) -> tuple[str, str, str] | None:
    c = _condition(gw, type_)
    return c if c is not None and c[1] == reason else None


def _stored(state: store.StateDir, image: Image) -> set[bool]:
    """Whether each blob of ``image`` (manifest, config, layers) is in the store."""
    digests = [image.manifest.digest, image.config.digest, *(b.digest for b in image.layers)]
    return {state.blob(d).exists() for d in digests}


def _image_bytes_sent(gw: FakeGateway, *images: Image) -> int:
    digests = {d for i in images for d in (i.config.digest, *(b.digest for b in i.layers))}
    return sum(n for d, n in gw.blob_bytes_sent.items() if d in digests)


def test_the_previous_image_is_kept_the_rest_collected_and_a_rollback_is_instant(gw, state) -> None:
    v1, v2, v3 = (gw.add_image(REPO, [LAYER], seed=s) for s in (1, 2, 3))
    rt = SimulatedRuntime()
    with running_agent(state, rt) as agent:
        for n, image in enumerate((v1, v2, v3), start=1):
            gw.publish((image.workload(version=str(n)),))
            wanted = {"model": image.manifest.digest}
            wait_for(f"v{n}", functools.partial(_runs, rt, wanted))
        # Collected after the old instance stops: wait for it.
        wait_for("v1 collected", lambda: rt.images() == {v2.manifest.digest, v3.manifest.digest})
        wait_for("v1's blobs collected", lambda: _stored(state, v1) == {False})
        assert _stored(state, v2) == {True}, "v2 is kept for rollback"
        assert _stored(state, v3) == {True}
        assert not list(state.blobs.glob("*.partial"))

        sent = _image_bytes_sent(gw, v1, v2, v3)
        gw.publish((v2.workload(version="2"),))  # roll back
        wait_for("v2 again", lambda: _running(rt) == {"model": v2.manifest.digest})
        wait_for("committed", lambda: agent.activator.previous == {"model": v3.manifest.digest})
        assert _image_bytes_sent(gw, v1, v2, v3) == sent, "no image blob fetched again"
        received = agent.activator.timings.bytes_received
        assert 0 < received < LAYER // 20, received  # index, manifest, signature only
        assert rt.images() == {v2.manifest.digest, v3.manifest.digest}  # v3 now previous
        assert _stored(state, v3) == {True}
    assert agent.activator.previous == {"model": v3.manifest.digest}


def test_each_workload_keeps_its_own_previous_image(gw, state) -> None:
    a1, a2, a3 = (gw.add_image(REPO, [1000], seed=s) for s in (1, 2, 3))
    b1, b2 = (gw.add_image(REPO, [1000], seed=s) for s in (11, 12))
    rt = SimulatedRuntime()
    steps = [(a1, b1), (a2, b2), (a3, b2)]  # the last one changes only "a"
    with running_agent(state, rt) as agent:
        for a, b in steps:
            gw.publish((a.workload("a"), b.workload("b")))
            wanted = {"a": a.manifest.digest, "b": b.manifest.digest}
            wait_for("running", functools.partial(_runs, rt, wanted))
        wait_for("collected", lambda: len(rt.images()) == 4)
    assert agent.activator.previous == {"a": a2.manifest.digest, "b": b1.manifest.digest}
    digests = {i.manifest.digest for i in (a3, a2, b2, b1)}
    assert rt.images() == digests, "b's rollback image survives a's second update"
    assert _stored(state, a1) == {False}
    assert _stored(state, b1) == {True}


def test_a_config_only_update_keeps_the_image_to_roll_back_to(gw, state) -> None:
    v1, v2 = gw.add_image(REPO, [1000], seed=1), gw.add_image(REPO, [1000], seed=2)
    rt = SimulatedRuntime()
    with running_agent(state, rt) as agent:
        gw.publish((v1.workload(version="1"),))
        wait_for("v1", lambda: _running(rt) == {"model": v1.manifest.digest})
        gw.publish((v2.workload(version="2"),))
        wait_for("v2", lambda: _running(rt) == {"model": v2.manifest.digest})
        gw.publish((v2.workload(version="2", config={"THRESHOLD": "0.9"}),))
        wait_for("config applied", lambda: len(rt.started) == 3 and len(rt.running()) == 1)
        wait_for("committed", lambda: agent.activator.version == gw.version)
    assert rt.images() == {v1.manifest.digest, v2.manifest.digest}
    assert _stored(state, v1) == {True}


@pytest.fixture
def camera(tmp_path: Path) -> Path:
    """A stand-in /dev/edgefleet-cam0 under a device root the agent is pointed at
    (only its existence is checked by the agent; the simulated runtime maps nothing)."""
    node = tmp_path / "host" / "dev" / "edgefleet-cam0"
    node.parent.mkdir(parents=True)
    node.touch()
    return node


def test_an_unplugged_device_is_reported_and_the_workload_comes_back_with_it(
    gw, state, camera
) -> None:
    dev_root = str(camera.parent.parent)
    settings = dataclasses.replace(
        FAST, activation=dataclasses.replace(FAST.activation, dev_root=dev_root)
    )
    image = gw.add_image(REPO, [1000])
    gw.publish((image.workload(host_devices=("/dev/edgefleet-cam0",)),))
    rt = SimulatedRuntime()
    with running_agent(state, rt, settings) as agent:
        wait_for(
            "Ready", lambda: (_condition(gw, "Ready") or ())[:2] == ("True", "WorkloadsHealthy")
        )
        camera.unlink()  # unplugged while the workload runs
        ready = wait_for(
            "DeviceMissing",
            lambda: _with_reason(gw, "Ready", "DeviceMissing"),
        )
        assert ready is not None
        assert ready[0] == "False"
        assert "/dev/edgefleet-cam0" in ready[2]
        assert "model" in ready[2]
        (status,) = gw.reports[max(gw.reports)].workloads
        assert status.health == "Unhealthy"
        assert _running(rt) == {"model": image.manifest.digest}, "left running: it may recover"

        (first,) = rt.running()
        rt.stop(first)  # then the container dies: no restart while the device is gone
        wait_for("reported unhealthy", lambda: agent.activator.faults and not rt.running())
        heals, posts = len(rt.started), gw.report_posts
        # Heal runs once per report interval: three reports, about three heal turns.
        wait_for("a few heal turns", lambda: gw.report_posts >= posts + 3)
        assert len(rt.started) == heals
        assert (_condition(gw, "Ready") or ())[:2] == ("False", "DeviceMissing")

        camera.touch()  # plugged back in
        wait_for("restarted", lambda: _running(rt) == {"model": image.manifest.digest})
        wait_for(
            "Ready", lambda: (_condition(gw, "Ready") or ())[:2] == ("True", "WorkloadsHealthy")
        )
        assert agent.activator.faults == {}


def test_a_workload_that_cannot_be_restarted_says_why(gw, state) -> None:
    image = gw.add_image(REPO, [1000])
    gw.publish((image.workload(),))
    rt = SimulatedRuntime()
    with running_agent(state, rt):
        wait_for(
            "Ready", lambda: (_condition(gw, "Ready") or ())[:2] == ("True", "WorkloadsHealthy")
        )
        rt.behaviour.exit_on_start.add(image.manifest.digest)  # it now dies at once
        (first,) = rt.running()
        rt.stop(first)
        ready = wait_for("Exited", lambda: _with_reason(gw, "Ready", "Exited"))
        assert ready is not None
        assert ready[0] == "False"
        assert "model" in ready[2]
        assert "not healthy" in ready[2]
        rt.behaviour.exit_on_start.clear()
        wait_for(
            "Ready", lambda: (_condition(gw, "Ready") or ())[:2] == ("True", "WorkloadsHealthy")
        )
        assert _running(rt) == {"model": image.manifest.digest}
