"""The gateway under test in bench/gateway.py: ``edgefleet gateway`` as its own process,
started (and started again) on one port, and its ``/metrics`` read over TLS the way a
device reaches it.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import time
from pathlib import Path

import httpx

from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.procs import Service, free_port, wait_until
from edgefleet.testing.simdevice import SimDevice

__all__ = ["GW_NS", "GatewayProcess"]

GW_NS = "edgefleet-system"


class GatewayProcess:
    """One gateway replica (``bench-gw``) on a free port; each start logs to its own file."""

    def __init__(self, cp: ControlPlane, work: Path, write_rate: float) -> None:
        self.cp, self.work, self.write_rate = cp, work, write_rate
        self.port = free_port()
        self.service: Service | None = None
        self.starts = 0

    def start(self) -> float:
        """Start the process and wait until it serves; the monotonic instant it did."""
        self.starts += 1
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")},
            "KUBECONFIG": str(self.cp.kubeconfig),
            "EDGEFLEET_NAMESPACE": GW_NS,
            "EDGEFLEET_GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "EDGEFLEET_GATEWAY_NAMES": "127.0.0.1,localhost",
            "EDGEFLEET_GATEWAY_REPLICA": "bench-gw",
            "EDGEFLEET_GATEWAY_WRITE_RATE": str(self.write_rate),
        }
        log = self.work / f"gateway-{self.starts}.log"
        self.service = Service(
            "gateway", [sys.executable, "-m", "edgefleet.cli", "--json-logs", "gateway"], log, env
        )
        wait_until(
            lambda: "gateway serving" in log.read_text(errors="replace"),
            timeout=120,
            what="gateway start-up",
            alive=self.service.check_alive,
        )
        return time.monotonic()

    @property
    def pid(self) -> int:
        assert self.service is not None
        return self.service.process.pid

    def stop(self, grace: float = 5.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``grace`` seconds); idempotent."""
        if self.service is not None:
            self.service.stop(grace=grace)

    async def metric(self, sim: SimDevice, name: str) -> str:
        """The lines of the gateway's ``/metrics`` that start with ``name``."""
        assert sim.gateway_ca is not None
        ctx = ssl.create_default_context(cadata=sim.gateway_ca.decode())
        async with httpx.AsyncClient(verify=ctx, timeout=60) as http:
            for attempt in range(5):  # the gateway (or this process) may be busy
                try:
                    text = (await http.get(f"https://127.0.0.1:{self.port}/metrics")).text
                    break
                except httpx.TransportError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(2)
        return "\n".join(line for line in text.splitlines() if line.startswith(name))

    async def admission(self, sim: SimDevice) -> str:
        """The gateway's admission counters (failed handshakes, refused connections)."""
        text = await self.metric(sim, "edgefleet_gateway_")
        wanted = ("handshake_failures_total", "connections_refused_total", "requests_total")
        out = []
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if any(w in name for w in wanted[:2]) or ("requests_total" in name and '"503"' in name):
                out.append(f"{name.removeprefix('edgefleet_gateway_')} {float(value):.0f}")
        return "; ".join(out) or "none failed or refused"
