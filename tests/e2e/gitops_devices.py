"""The device side of the GitOps e2e tests: a real gateway replica and enrolled
simulated agents, and reads of what the devices hold and report.

The gateway is :class:`~edgefleet.testing.gatewayrun.GatewayReplica` (mTLS, signed
desired-state documents, reports → EdgeDevice status), in the operator's namespace,
with the operator's signing key. Each device is a :class:`ProbedSim`: a
:class:`~edgefleet.testing.simdevice.SimDevice` (enrolled with a bootstrap token,
long-polls, verifies every document with ``edgefleet_node.protocol.desired.accept``)
that behaves like the real agent when a model's probe fails: it keeps running what it
ran before and reports ``UpdateFailed=True`` (``ProbeFailed``). Which versions fail is
the test's choice (``broken``): no model runs here, only the protocol.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes import client, config

from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.testing.gatewayrun import GatewayReplica, loopback_config
from edgefleet.testing.procs import wait_until
from edgefleet.testing.simdevice import SimDevice
from edgefleet_node.protocol import report
from tests.e2e.conftest import OPERATOR_NS
from tests.integration.gateway_fixtures import Fleet

__all__ = ["Devices", "ProbedSim", "devices"]

MODEL = "detector"


@dataclass
class ProbedSim(SimDevice):
    """A simulated agent whose probe fails for the model versions in ``broken``."""

    broken: set[str] = field(default_factory=set)
    running: tuple[report.WorkloadStatus, ...] = ()
    active: int | None = None  # the desired-state version whose workloads run
    ran: list[str] = field(default_factory=list)  # every version it started, in order
    offered: list[str] = field(default_factory=list)  # every version it was sent, in order
    offers: list[tuple[str, float]] = field(default_factory=list)  # (version, monotonic)

    def snapshot(self) -> report.Report:
        base = super().snapshot()
        self.offered += [w.version for w in base.workloads]
        self.offers += [(w.version, time.monotonic()) for w in base.workloads]
        bad = [w for w in base.workloads if w.version in self.broken]
        if bad:  # the new workload failed its probe: the old ones keep serving
            why = f"{bad[0].name} {bad[0].version}: probe failed"
            failed = report.AgentCondition("UpdateFailed", "True", "ProbeFailed", why)
            return dataclasses.replace(
                base, desired_version=self.active, workloads=self.running, conditions=(failed,)
            )
        before = {(w.name, w.manifest_digest) for w in self.running}
        self.ran += [w.version for w in base.workloads if (w.name, w.manifest_digest) not in before]
        self.running, self.active = base.workloads, base.desired_version
        ok = report.AgentCondition("UpdateFailed", "False", "Succeeded", "active")
        return dataclasses.replace(base, conditions=(ok,))

    def offered_since(self, version: str, since: float) -> float | None:
        """When this device was first sent ``version`` after ``since`` (monotonic)."""
        return next((t for v, t in self.offers if v == version and t >= since), None)

    def holds(self) -> str | None:
        """The version of the model in the last document this device verified."""
        held = self.held
        return next((w.version for w in held.workloads if w.name == MODEL), None) if held else None

    def runs(self) -> tuple[str, str] | None:
        """(version, manifest digest) of the model it runs."""
        return next(((w.version, w.manifest_digest) for w in self.running if w.name == MODEL), None)


@dataclass
class Devices:
    fleet: Fleet
    sims: list[ProbedSim]

    def edgedevices(self) -> list[dict[str, Any]]:
        api = client.CustomObjectsApi(self.fleet.api)
        listed = cast(
            dict[str, Any],
            api.list_namespaced_custom_object(
                "edgefleet.io", "v1alpha1", self.fleet.namespace, "edgedevices"
            ),
        )
        items: list[dict[str, Any]] = listed["items"]
        return items

    def on(self, version: str, digests: dict[str, str]) -> bool:
        """Every device holds ``version``, runs it (the digest of its platform) and the
        gateway wrote that to its EdgeDevice, ``Healthy`` and ``Ready``."""
        if not all(s.holds() == version and s.runs() == (version, digests[s.platform])
                   for s in self.sims):  # fmt: skip
            return False
        items = self.edgedevices()
        return len(items) == len(self.sims) and all(_reports(d, version, digests) for d in items)


def _reports(dev: dict[str, Any], version: str, digests: dict[str, str]) -> bool:
    status: dict[str, Any] = dev.get("status") or {}
    cur = next((w for w in status.get("current") or [] if w["model"] == MODEL), None)
    ready: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c["type"] == "Ready"), {}
    )
    return (
        cur is not None
        and cur["version"] == version
        and cur["imageDigest"] == digests[dev["spec"]["platform"]]
        and cur["health"] == "Healthy"
        and ready.get("status") == "True"
    )


@contextmanager
def devices(crds: Any, namespace: str, platforms: list[str]) -> Iterator[Devices]:
    """One gateway replica and one enrolled device per entry of ``platforms`` (labelled
    ``site=berlin``), their agent loops running in a thread; all stopped afterwards."""
    api = config.new_client_from_config(config_file=str(crds.kubeconfig))  # type: ignore[no-untyped-call]
    ensure_signing_key(client.CoreV1Api(api), OPERATOR_NS, "edgefleet-signing-key")
    with GatewayReplica(loopback_config(OPERATOR_NS, "gw-gitops"), crds.kubeconfig) as gw:
        fleet = Fleet(crds, namespace, gw)
        stop: list[asyncio.Event] = []
        thread: threading.Thread | None = None
        try:
            sims = []
            for i, platform in enumerate(platforms):
                name = f"{platform.split('/')[1]}-{i:02d}"
                fleet.device(name, platform)
                crds.kubectl("label", "edgedevice", name, "-n", namespace, "site=berlin")
                sim = ProbedSim("127.0.0.1", gw.port, namespace, name, platform)
                fleet.sims.append(sim)
                enrolled = fleet.run(sim.enroll(fleet.token(name)))
                assert enrolled.status == 200, enrolled.body
                sims.append(sim)

            async def run_all() -> None:
                stop.append(asyncio.Event())
                await asyncio.gather(*(s.run(stop[0], wait=20) for s in sims))

            thread = threading.Thread(target=fleet.loop.run_until_complete, args=(run_all(),))
            thread.start()
            yield Devices(fleet, sims)
        finally:
            if thread is not None:
                wait_until(lambda: bool(stop), timeout=10, what="agent loops started")
                fleet.loop.call_soon_threadsafe(stop[0].set)
                thread.join(timeout=60)
            fleet.close()
            for sim in fleet.sims:  # its key and certificate
                shutil.rmtree(sim.workdir, ignore_errors=True)
