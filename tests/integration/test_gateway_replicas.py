"""Gateway replicas: a restart loses nothing, two replicas serve one fleet consistently,
and a device whose replica died (or who went quiet) is marked offline."""

from __future__ import annotations

import asyncio
import dataclasses

from edgefleet.testing.gatewayrun import GatewayReplica, loopback_config
from edgefleet.testing.procs import wait_until
from tests.integration.gateway_fixtures import GW_NS


def _replica(crds, name: str, port: int | None = None) -> GatewayReplica:
    cfg = loopback_config(GW_NS, name)
    if port is not None:
        cfg = dataclasses.replace(cfg, port=port)
    return GatewayReplica(cfg, crds.kubeconfig)


def _at(sim, replica: GatewayReplica):
    sim.close()
    sim._conn = None
    sim.port = replica.port
    return sim


def _holder(fleet, name):
    cond = fleet.condition(name, "Online") or {}
    return cond.get("status"), cond.get("message", "").rpartition(" ")[2]


def test_restart_devices_reconnect_and_nothing_is_lost(crds, fleet):
    first = _replica(crds, "gw-r").start()
    try:
        sims = []
        for i in range(10):
            fleet.device(f"r{i}")
            sim = _at(fleet.sim(f"r{i}"), first)
            assert fleet.run(sim.enroll(fleet.token(f"r{i}"))).status == 200
            sims.append(sim)
        stop = asyncio.Event()

        async def start_all() -> list[asyncio.Task[None]]:
            return [asyncio.create_task(s.run(stop, wait=2)) for s in sims]

        tasks = fleet.run(start_all())
        fleet.drive_until(
            lambda: all(s.documents for s in sims),
            timeout=30,
            what="every device has its document",
        )
        wait_until(
            lambda: all(_holder(fleet, f"r{i}") == ("True", "gw-r") for i in range(10)),
            timeout=30,
            what="every device online via gw-r",
        )
        first.stop()
        # Desired state changes while no gateway runs...
        for i in range(10):
            fleet.set_desired(f"r{i}", 1, {"resnet": "2.0.0"})
        second = _replica(crds, "gw-r", port=first.port).start()
        try:
            # ...and reaches every device after the restart; reports land.
            fleet.drive_until(
                lambda: all(s.held is not None and s.held.workloads for s in sims),
                timeout=60,
                what="every device has the new document",
            )
            wait_until(
                lambda: all(
                    (fleet.get(f"r{i}")["status"].get("currentVersion")) == "resnet=2.0.0"
                    for i in range(10)
                ),
                timeout=60,
                what="every device reported the new version",
            )
            # A restart within the grace period is not an outage: Online never went False.
            for i in range(10):
                online = fleet.condition(f"r{i}", "Online")
                assert online["status"] == "True"
        finally:
            stop.set()
            fleet.run(asyncio.gather(*tasks))
            second.stop()
    finally:
        first.stop()


def test_two_replicas_serve_one_fleet_consistently(crds, fleet):
    b, c = _replica(crds, "gw-b").start(), _replica(crds, "gw-c").start()
    try:
        one = _at(fleet.sim("m1"), b)
        fleet.device("m1")
        assert fleet.run(one.enroll(fleet.token("m1"))).status == 200
        two = _at(fleet.sim("m2"), c)
        fleet.device("m2")
        assert fleet.run(two.enroll(fleet.token("m2"))).status == 200
        assert fleet.run(one.poll(wait=0)).status == 200
        assert fleet.run(two.poll(wait=0)).status == 200
        wait_until(lambda: _holder(fleet, "m1") == ("True", "gw-b"), timeout=20, what="m1@b")
        wait_until(lambda: _holder(fleet, "m2") == ("True", "gw-c"), timeout=20, what="m2@c")

        # A desired change wakes the device's long-poll on whichever replica holds it,
        # with the same document version both replicas compute.
        fleet.set_desired("m1", 1, {"resnet": "1.0.0"})
        assert fleet.run(one.poll(wait=20)).status == 200
        version = one.held.version
        _at(one, c)
        assert fleet.run(one.poll(wait=0, have=None)).status == 200
        assert one.held.version == version

        # A report applied through one replica is not applied twice through the other.
        newest = one.snapshot()
        assert fleet.run(one.report(newest)).status == 200
        rv = fleet.get("m1")["metadata"]["resourceVersion"]
        _at(one, b)
        assert fleet.run(one.report(newest)).status == 200
        assert one.acked == newest.seq
        assert fleet.get("m1")["metadata"]["resourceVersion"] == rv

        # The device moves to gw-c: Online names gw-c, once; no flapping back.
        _at(one, c)
        assert fleet.run(one.poll(wait=0.5)).status == 304
        wait_until(lambda: _holder(fleet, "m1") == ("True", "gw-c"), timeout=20, what="m1@c")
        rv = fleet.get("m1")["metadata"]["resourceVersion"]
        for _ in range(3):
            assert fleet.run(one.poll(wait=0.3)).status == 304
        assert fleet.get("m1")["metadata"]["resourceVersion"] == rv
    finally:
        b.stop()
        c.stop()


def test_offline_after_grace_on_a_quiet_device_and_a_dead_replica(crds, fleet):
    d, e = _replica(crds, "gw-d").start(), _replica(crds, "gw-e").start()
    try:
        quiet = _at(fleet.sim("q1"), d)
        fleet.device("q1")
        assert fleet.run(quiet.enroll(fleet.token("q1"))).status == 200
        orphan = _at(fleet.sim("q2"), e)
        fleet.device("q2")
        assert fleet.run(orphan.enroll(fleet.token("q2"))).status == 200
        assert fleet.run(quiet.poll(wait=0)).status == 200
        assert fleet.run(orphan.poll(wait=0)).status == 200
        wait_until(lambda: _holder(fleet, "q1") == ("True", "gw-d"), timeout=20, what="q1@d")
        wait_until(lambda: _holder(fleet, "q2") == ("True", "gw-e"), timeout=20, what="q2@e")
        quiet.close()
        orphan.close()
        e.stop()  # its devices are now nobody's: gw-d marks them offline after the grace
        fleet.wait_condition("q1", "Online", "False", timeout=45)
        fleet.wait_condition("q2", "Online", "False", timeout=45)
        assert fleet.condition("q2", "Online")["reason"] == "HeartbeatMissed"
        assert fleet.condition("q1", "Ready")["reason"] == "Offline"
        # Back online at the first poll.
        assert fleet.run(_at(orphan, d).poll(wait=0)).status == 304  # it holds the newest
        wait_until(lambda: _holder(fleet, "q2") == ("True", "gw-d"), timeout=20, what="q2@d")
    finally:
        d.stop()
        e.stop()
