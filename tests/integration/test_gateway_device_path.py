"""The device path through a real gateway, API server and TLS: enrol, long-poll, report,
status as conditions, renewal, lock-out."""

from __future__ import annotations

import asyncio
import time

from edgefleet.testing.procs import wait_until
from tests.integration.gateway_fixtures import DIGEST2


def test_enrol_then_mtls_poll_report_and_ready(fleet):
    sim = fleet.enrolled("cam-1")
    status = fleet.get("cam-1")["status"]
    assert status["enrollment"]["instanceId"] == sim.instance_id
    assert fleet.condition("cam-1", "Enrolled")["status"] == "True"

    first = fleet.run(sim.poll(wait=0))
    assert first.status == 200
    assert sim.held is not None
    assert sim.held.workloads == ()
    fleet.wait_condition("cam-1", "Online", "True")
    # Nothing changed: the poll is held and answers 304 when it times out.
    assert fleet.run(sim.poll(wait=1)).status == 304

    fleet.set_desired("cam-1", 1, {"resnet": "1.2.0"})

    async def woken() -> tuple[int, float]:
        started = time.monotonic()
        result = await sim.poll(wait=30)
        return result.status, time.monotonic() - started

    status_code, _elapsed = fleet.run(woken())
    assert status_code == 200
    (workload,) = sim.held.workloads
    assert (workload.name, workload.version, workload.manifest_digest) == (
        "resnet",
        "1.2.0",
        DIGEST2,
    )
    assert workload.platform == "linux/arm64"
    assert sim.held.version >> 32 == 1

    assert fleet.run(sim.report()).status == 200
    fleet.wait_condition("cam-1", "Ready", "True")
    status = fleet.get("cam-1")["status"]
    assert status["currentVersion"] == "resnet=1.2.0"
    assert status["current"][0]["imageDigest"] == DIGEST2
    assert status["reportSeq"] == sim.seq


async def _parked(fleet, timeout: float = 10.0) -> None:
    """Until the gateway holds a long-poll open (its own gauge says so)."""
    registry = fleet.gateway.gateway.metrics.registry
    deadline = time.monotonic() + timeout
    while (registry.get_sample_value("edgefleet_gateway_longpolls_open") or 0) < 1:
        assert time.monotonic() < deadline, "no long-poll held within the deadline"
        await asyncio.sleep(0.02)  # yield to the poll task; the deadline bounds it


def test_long_poll_wakes_at_once_on_a_desired_change(fleet):
    sim = fleet.enrolled("cam-2")
    assert fleet.run(sim.poll(wait=0)).status == 200

    async def scenario() -> float:
        poll = asyncio.create_task(sim.poll(wait=60))
        await _parked(fleet)  # the poll is held at the gateway
        await asyncio.to_thread(fleet.set_desired, "cam-2", 1, {"yolo": "2.0.0"})
        written = time.monotonic()  # kubectl's own start-up (seconds under load) not counted
        result = await poll
        assert result.status == 200
        return time.monotonic() - written

    # Woken by the change, not by the 60 s poll timeout; the gateway's latency is in /metrics.
    assert fleet.run(scenario()) < 5


def _poll_until_it_holds_workloads(fleet, sim) -> None:
    """Poll until the document names workloads: the gateway learns of a desired change
    through its watch, a moment after the write."""

    def holds() -> bool:
        assert fleet.run(sim.poll(wait=0)).status in (200, 304)
        return sim.held is not None and bool(sim.held.workloads)

    wait_until(holds, timeout=30, what="the desired workloads in the held document")


def test_device_config_layers_over_workload_config(fleet):
    sim = fleet.enrolled("cam-3", config={"THRESHOLD": "0.9", "SITE": "north"})
    fleet.set_desired("cam-3", 1, {"resnet": "1.0.0"})
    _poll_until_it_holds_workloads(fleet, sim)
    (workload,) = sim.held.workloads
    assert dict(workload.config) == {"THRESHOLD": "0.9", "SITE": "north"}


def test_reports_are_idempotent_and_only_the_newest_applies(fleet):
    sim = fleet.enrolled("cam-4")
    fleet.set_desired("cam-4", 1, {"resnet": "1.0.0"})
    _poll_until_it_holds_workloads(fleet, sim)
    older, newer = sim.snapshot(), sim.snapshot()
    assert fleet.run(sim.report(newer, older)).status == 200
    assert sim.acked == newer.seq
    # Let the status settle (the poll's Online transition is written asynchronously),
    # then a resent batch must not write anything.
    fleet.wait_condition("cam-4", "Online", "True")
    wait_until(lambda: fleet.get("cam-4")["status"].get("reportSeq") == newer.seq,
               timeout=30, what="the newest report applied", interval=0.2)  # fmt: skip
    rv = fleet.get("cam-4")["metadata"]["resourceVersion"]
    # The same batch again (a retry after a lost ack): acknowledged, nothing written.
    assert fleet.run(sim.report(older, newer)).status == 200
    assert sim.acked == newer.seq
    assert fleet.get("cam-4")["metadata"]["resourceVersion"] == rv
    assert fleet.get("cam-4")["status"]["reportSeq"] == newer.seq


def test_heartbeats_are_not_writes(fleet):
    sim = fleet.enrolled("cam-5")
    assert fleet.run(sim.poll(wait=0)).status == 200
    fleet.wait_condition("cam-5", "Online", "True")
    rv = fleet.get("cam-5")["metadata"]["resourceVersion"]
    for _ in range(5):
        assert fleet.run(sim.poll(wait=0.2)).status == 304
    assert fleet.get("cam-5")["metadata"]["resourceVersion"] == rv


def test_renewal_keeps_the_device_working_and_retires_the_old_certificate(fleet):
    sim = fleet.enrolled("cam-6")
    old_serial = fleet.get("cam-6")["status"]["enrollment"]["certificateSerial"]
    old_cert, old_key = sim.cert_pem, sim.key
    assert fleet.run(sim.renew()).status == 200
    enrollment = fleet.get("cam-6")["status"]["enrollment"]
    assert enrollment["previousSerial"] == old_serial
    assert enrollment["certificateSerial"] != old_serial
    assert fleet.run(sim.poll(wait=0)).status == 200  # first use of the new certificate
    wait_until(
        lambda: "previousSerial" not in fleet.get("cam-6")["status"]["enrollment"],
        timeout=15,
        what="previousSerial cleared",
    )
    stale = fleet.sim("cam-6", instance_id=sim.instance_id)
    stale.gateway_ca, stale.cert_pem, stale.key = sim.gateway_ca, old_cert, old_key
    stale.signing_keys = sim.signing_keys

    async def old_refused() -> bool:
        result = await stale.poll(wait=0)
        return result.status == 403 and result.reason == "CertificateSuperseded"

    wait_until(lambda: fleet.run(old_refused()), timeout=15, what="the old certificate refused")


def test_suspension_ends_an_open_long_poll_within_seconds(fleet):
    sim = fleet.enrolled("cam-7")
    assert fleet.run(sim.poll(wait=0)).status == 200

    async def scenario() -> tuple[int, str | None, float]:
        poll = asyncio.create_task(sim.poll(wait=60))
        await _parked(fleet)
        await asyncio.to_thread(fleet.patch_spec, "cam-7", {"suspended": True})
        written = time.monotonic()  # kubectl's own start-up not counted
        result = await poll
        return result.status, result.reason, time.monotonic() - written

    status, reason, elapsed = fleet.run(scenario())
    assert (status, reason) == (403, "Suspended")
    assert elapsed < 5
    fleet.wait_condition("cam-7", "Ready", "False")


def test_revoke_and_delete_lock_the_device_out(fleet):
    from edgefleet.cli import main

    sim = fleet.enrolled("cam-8")
    assert fleet.run(sim.poll(wait=0)).status == 200
    kubeconfig = str(fleet.cp.kubeconfig)
    assert (
        main(["device", "revoke", "cam-8", "-n", fleet.namespace, "--kubeconfig", kubeconfig]) == 0
    )

    async def refused(reason: str) -> bool:
        result = await sim.poll(wait=0)
        return result.status == 403 and result.reason == reason

    wait_until(lambda: fleet.run(refused("Revoked")), timeout=10, what="revoked device refused")
    fleet.wait_condition("cam-8", "Enrolled", "False")
    other = fleet.enrolled("cam-9")
    assert fleet.run(other.poll(wait=0)).status == 200
    fleet.cp.kubectl("delete", "edgedevice", "cam-9", "-n", fleet.namespace)
    wait_until(
        lambda: fleet.run(other.poll(wait=0)).status == 403,
        timeout=10,
        what="deleted device refused",
    )
    # ...without saying whether the device ever existed.
    assert fleet.run(other.poll(wait=0)).reason == "DeviceNotAllowed"
