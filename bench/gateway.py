"""Benchmark of the device gateway: N simulated devices against one replica.

Starts its own control plane (etcd + kube-apiserver), installs the CRDs, runs
``edgefleet gateway`` as its own process (uvloop, TLS, the PKI generated into Secrets)
and N simulated devices (:mod:`edgefleet.testing.simdevice`) in this process, each with
its own key, certificate and one keep-alive mTLS connection holding a long-poll that
re-polls every ``--wait`` seconds (the heartbeat). Measures:

- enrolment rate: ``--enrol`` devices enrol with real bootstrap tokens, 16 at a time;
  the others get their certificate from the same device CA and the same enrolment
  record written directly (a set-up shortcut, so 10k tokens are not minted one by one);
- idle: gateway CPU (utime+stime from /proc) per 1k devices, RSS, and API writes
  counted by the API server itself (``apiserver_request_total``, write verbs) for
  EdgeDevices and Leases, per device-hour;
- wake-up: the time from the API server accepting a device's new ``status.desired`` to
  the device holding the new signed document (p50/p99), and the gateway's own
  histogram (watch event -> answer);
- restart: SIGTERM the gateway, start it again; the time until every device has polled
  the new process successfully.

    .venv/bin/python bench/gateway.py --devices 1000 [--idle 120] [--wait 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvloop
from kubernetes import client, config

from edgefleet.clients import pki as pki_client
from edgefleet.clients.kube import KubeClient
from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.simdevice import SimDevice

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the bench package beside it

from bench import gateway_fleet as fleet  # noqa: E402
from bench import measure  # noqa: E402
from bench.gateway_fleet import FLEET_NS  # noqa: E402
from bench.gateway_process import GW_NS, GatewayProcess  # noqa: E402


def _apiserver_writes(cp: ControlPlane) -> dict[str, float]:
    """API writes (apiserver_request_total, write verbs) to EdgeDevices and Leases."""
    text = measure.apiserver_metrics(cp)
    return {
        r: measure.request_total(text, r, measure.WRITE_VERBS) for r in ("edgedevices", "leases")
    }


class Bench:
    """The phases of one run, in order: enrol, first connect, idle, wake-up, restart."""

    def __init__(self, cp: ControlPlane, args: argparse.Namespace, work: Path) -> None:
        self.cp, self.args, self.work = cp, args, work
        self.api = config.new_client_from_config(config_file=str(cp.kubeconfig))  # type: ignore[no-untyped-call]
        self.gateway = GatewayProcess(cp, work, args.write_rate)
        self.rows: list[tuple[str, str]] = []

    async def run(self) -> None:
        a = self.args
        n = a.devices
        kube = KubeClient.from_environment(str(self.cp.kubeconfig))
        sims = await self.enrol(kube)
        stop = asyncio.Event()
        tasks = await self.first_connect(sims, stop)
        await self.idle(n)
        await self.wake_up(kube, sims)
        await self.restart(sims)
        stop.set()
        for s in sims:
            s.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await kube.aclose()

    async def enrol(self, kube: KubeClient) -> list[SimDevice]:
        a = self.args
        n = a.devices
        t0 = time.monotonic()
        await fleet.make_devices(kube, n)
        print(f"# {n} EdgeDevices created in {time.monotonic() - t0:.1f}s", flush=True)
        gw_pki = await asyncio.to_thread(
            pki_client.load_or_create, self.api, GW_NS, ["127.0.0.1", "localhost"]
        )
        sims = fleet.sims(self.gateway.port, n, self.work)
        (self.work / "certs").mkdir(exist_ok=True)
        enrolled = min(a.enrol, n)
        rate = await fleet.enrol_with_tokens(
            self.api, GW_NS, sims[:enrolled], gw_pki.serving_ca_hash()
        )
        self.rows.append(
            (
                "enrolment rate (real tokens, 16 concurrent)",
                f"{rate:.1f} devices/s ({enrolled} devices)",
            )
        )
        await fleet.enrol_directly(kube, sims[enrolled:], gw_pki)
        print("# enrolled", flush=True)
        return sims

    async def first_connect(
        self, sims: list[SimDevice], stop: asyncio.Event
    ) -> list[asyncio.Task[None]]:
        """Start every device (until ``stop``): its first long-poll, then the Online
        writes the first connect causes drain. The devices' tasks."""
        a = self.args
        n = len(sims)
        started = time.monotonic()
        tasks = [asyncio.create_task(s.run(stop, wait=a.wait)) for s in sims]
        shown = started
        while (connected := sum(1 for s in sims if s.documents)) < n:
            await asyncio.sleep(0.5)
            if time.monotonic() - shown > 30:
                shown = time.monotonic()
                failures = sum(s.failures for s in sims)
                print(f"# {connected}/{n} connected, {failures} failures", flush=True)
            if time.monotonic() - started > a.connect_timeout:
                raise TimeoutError(f"only {connected}/{n} devices connected")
        self.rows.append(("first connect of all devices", f"{time.monotonic() - started:.1f} s"))
        self.rows.append(
            ("  handshakes / refusals during it", await self.gateway.admission(sims[0]))
        )
        # The Online writes of the first connect drain (at EDGEFLEET_GATEWAY_WRITE_RATE).
        drained = time.monotonic()
        while True:
            await asyncio.sleep(2)
            text = await self.gateway.metric(sims[0], "edgefleet_gateway_status_writes_pending")
            if float(text.split()[-1]) == 0:
                break
        self.rows.append(
            ("first-connect Online writes drained", f"{time.monotonic() - drained:.0f} s")
        )
        await asyncio.sleep(a.wait + 5)
        return tasks

    async def idle(self, n: int) -> None:
        """Gateway CPU and memory, and API writes, while the fleet only re-polls."""
        a = self.args
        pid = self.gateway.pid
        cpu0 = measure.cpu_seconds(pid)
        w0 = await asyncio.to_thread(_apiserver_writes, self.cp)
        await asyncio.sleep(a.idle)
        cpu1, rss = measure.cpu_seconds(pid), measure.memory_bytes(pid)
        w1 = await asyncio.to_thread(_apiserver_writes, self.cp)
        core = (cpu1 - cpu0) / a.idle
        per_k = core * 100 / (n / 1000)
        self.rows.append(
            (
                f"gateway CPU, idle, {n} devices (re-poll every {a.wait:g}s)",
                f"{core * 100:.1f} % of a core = {per_k:.2f} % per 1k devices",
            )
        )
        peak = measure.memory_bytes(pid, "VmHWM")
        self.rows.append(("gateway RSS, idle", f"{rss / 2**20:.0f} MiB (peak {peak / 2**20:.0f})"))
        dev_writes = w1["edgedevices"] - w0["edgedevices"]
        lease_writes = w1["leases"] - w0["leases"]
        hours = a.idle / 3600
        per_hour = dev_writes / (n * hours)
        self.rows.append(
            (
                "API writes when idle (apiserver_request_total)",
                f"EdgeDevices {dev_writes:.0f} in {a.idle:g}s = {per_hour:.3f} per device-hour;"
                f" Leases {lease_writes:.0f}",
            )
        )

    async def wake_up(self, kube: KubeClient, sims: list[SimDevice]) -> None:
        """API accepted a new desired state -> the device holds the new document."""
        n = len(sims)
        before = {s.name: s.documents for s in sims}
        done = await fleet.set_desired(kube, sims, "1.0.0")
        deadline = time.monotonic() + 120
        while any(s.documents == before[s.name] for s in sims) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        waits = [s.last_document_at - done[s.name] for s in sims if s.documents > before[s.name]]
        p50 = measure.percentile_rank(waits, 0.5) * 1000
        p99 = measure.percentile_rank(waits, 0.99) * 1000
        self.rows.append(
            (
                f"wake-up: API accepted desired -> device holds document ({len(waits)}/{n})",
                f"p50 {p50:.0f} ms, p99 {p99:.0f} ms",
            )
        )
        hist = await self.gateway.metric(sims[0], "edgefleet_gateway_longpoll_wakeup_seconds")
        print(hist, flush=True)

    async def restart(self, sims: list[SimDevice]) -> None:
        """SIGTERM, start again: until every device holds a long-poll on the new process."""
        n = len(sims)
        killed = time.monotonic()
        self.gateway.stop(grace=30)
        up = await asyncio.to_thread(self.gateway.start)
        # Back = every device holds a long-poll on the new process (its own gauge).
        back_at = float("nan")
        while time.monotonic() - up < 600:
            try:
                text = await self.gateway.metric(sims[0], "edgefleet_gateway_longpolls_open")
                if float(text.split()[-1]) >= n:
                    back_at = time.monotonic()
                    break
            except (httpx.HTTPError, ValueError, IndexError):
                pass
            await asyncio.sleep(0.2)
        self.rows.append(
            (
                f"restart: all {n} devices hold a long-poll on the new process",
                f"{back_at - up:.1f} s after it listened ({back_at - killed:.1f} s after SIGTERM)",
            )
        )
        self.rows.append(
            ("  handshakes / refusals during it", await self.gateway.admission(sims[0]))
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--enrol", type=int, default=200, help="devices enrolled with real tokens")
    parser.add_argument("--idle", type=float, default=120.0, help="idle window, seconds")
    parser.add_argument("--connect-timeout", type=float, default=1200.0)
    parser.add_argument("--write-rate", type=float, default=50.0, help="gateway write rate/s")
    parser.add_argument("--wait", type=float, default=30.0, help="long-poll wait (heartbeat)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp, ControlPlane() as cp:
        work = Path(tmp)
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
        for ns in (GW_NS, FLEET_NS):
            cp.kubectl("create", "namespace", ns)
        bench = Bench(cp, args, work)
        ensure_signing_key(client.CoreV1Api(bench.api), GW_NS, "edgefleet-signing-key")
        bench.gateway.start()
        try:
            uvloop.run(bench.run())  # the devices' side on uvloop too (less CPU and memory)
        finally:
            bench.gateway.stop()
        print(f"\n| gateway, {args.devices} simulated devices | value |\n| --- | --- |")
        for what, value in bench.rows:
            print(f"| {what} | {value} |")
        print(json.dumps({"devices": args.devices, "rows": bench.rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
