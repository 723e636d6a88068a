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
import os
import re
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvloop
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client, config

from edgefleet.clients import pki as pki_client
from edgefleet.clients import tokens
from edgefleet.clients.kube import KubeClient
from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.procs import Service, free_port, wait_until
from edgefleet.testing.simdevice import SimDevice, make_csr
from edgefleet_node.protocol import wire

ROOT = Path(__file__).resolve().parent.parent
GW_NS, FLEET_NS = "edgefleet-system", "fleet"
DIGEST = "sha256:" + "ab" * 32
WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE")


def _proc(pid: int, field: str = "VmRSS") -> tuple[float, int]:
    """(CPU seconds, RSS bytes, or another ``/proc/PID/status`` size) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = next(
        int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith(field + ":")
    )
    return cpu, rss


def _apiserver_writes(cp: ControlPlane) -> dict[str, float]:
    ctx = ssl.create_default_context(cafile=str(cp.dir / "ca.crt"))
    ctx.load_cert_chain(str(cp.dir / "admin.crt"), str(cp.dir / "admin.key"))
    text = httpx.get(f"{cp.url}/metrics", verify=ctx, timeout=30).text
    out: dict[str, float] = {"edgedevices": 0.0, "leases": 0.0}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") in out:
            out[labels["resource"]] += float(line.rsplit(" ", 1)[1])
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Bench:
    def __init__(self, cp: ControlPlane, args: argparse.Namespace, work: Path) -> None:
        self.cp, self.args, self.work = cp, args, work
        self.api = config.new_client_from_config(config_file=str(cp.kubeconfig))  # type: ignore[no-untyped-call]
        self.port = free_port()
        self.gateway: Service | None = None
        self.starts = 0
        self.rows: list[tuple[str, str]] = []

    # -- the gateway process -------------------------------------------------------
    def start_gateway(self) -> float:
        self.starts += 1
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")},
            "KUBECONFIG": str(self.cp.kubeconfig),
            "EDGEFLEET_NAMESPACE": GW_NS,
            "EDGEFLEET_GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "EDGEFLEET_GATEWAY_NAMES": "127.0.0.1,localhost",
            "EDGEFLEET_GATEWAY_REPLICA": "bench-gw",
            "EDGEFLEET_GATEWAY_WRITE_RATE": str(self.args.write_rate),
        }
        log = self.work / f"gateway-{self.starts}.log"
        self.gateway = Service(
            "gateway", [sys.executable, "-m", "edgefleet.cli", "--json-logs", "gateway"], log, env
        )
        wait_until(
            lambda: "gateway serving" in log.read_text(errors="replace"),
            timeout=120,
            what="gateway start-up",
            alive=self.gateway.check_alive,
        )
        return time.monotonic()

    # -- fleet set-up ----------------------------------------------------------------
    async def make_devices(self, kube: KubeClient, n: int) -> None:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            body = {
                "apiVersion": "edgefleet.io/v1alpha1",
                "kind": "EdgeDevice",
                "metadata": {"name": f"dev-{i:05d}", "namespace": FLEET_NS},
                "spec": {"platform": "linux/arm64"},
            }
            async with sem:
                await kube.apply(
                    f"/apis/edgefleet.io/v1alpha1/namespaces/{FLEET_NS}/edgedevices/dev-{i:05d}",
                    body,
                    manager="bench",
                )

        await asyncio.gather(*(one(i) for i in range(n)))

    def sims(self, n: int) -> list[SimDevice]:
        return [
            SimDevice("127.0.0.1", self.port, FLEET_NS, f"dev-{i:05d}", workdir=self.work / "certs")
            for i in range(n)
        ]

    async def enrol_with_tokens(self, sims: list[SimDevice], ca_hash: str) -> float:
        def make(device: str) -> Any:
            for attempt in range(10):  # one token store Secret: concurrent updates conflict
                try:
                    return tokens.create_token(
                        self.api,
                        gateway_namespace=GW_NS,
                        namespace=FLEET_NS,
                        device=device,
                        ca_hash=ca_hash,
                    )
                except tokens.TokenError:
                    if attempt == 9:
                        raise
                    time.sleep(0.2)
            raise AssertionError("unreachable")

        made = [await asyncio.to_thread(make, s.name) for s in sims]
        sem = asyncio.Semaphore(16)

        async def one(sim: SimDevice, token: Any) -> None:
            async with sem:
                result = await sim.enroll(str(token))
                for _ in range(5):  # 503: a transient conflict in the token store
                    if result.status != 503:
                        break
                    await asyncio.sleep(0.5)
                    result = await sim.enroll(str(token))
                if result.status != 200:
                    raise RuntimeError(f"enrol {sim.name}: {result.status} {result.body[:200]!r}")

        started = time.monotonic()
        await asyncio.gather(*(one(s, t) for s, t in zip(sims, made, strict=True)))
        return len(sims) / (time.monotonic() - started)

    async def enrol_directly(self, kube: KubeClient, sims: list[SimDevice], gw_pki: Any) -> None:
        """Set-up shortcut: the certificate from the same device CA, and the enrolment
        record the gateway would write (its field manager), without 10k tokens."""
        bundle = gw_pki.gateway_ca_bundle()
        keys = gw_pki.signing_key_pems()
        sem = asyncio.Semaphore(32)

        async def one(sim: SimDevice) -> None:
            sim.key = ec.generate_private_key(ec.SECP256R1())
            cert = gw_pki.issue(
                make_csr(sim.key, FLEET_NS, sim.name), namespace=FLEET_NS, device=sim.name
            )
            from cryptography.hazmat.primitives import serialization

            sim.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
            sim.gateway_ca, sim.signing_keys = bundle, keys
            body = {
                "apiVersion": "edgefleet.io/v1alpha1",
                "kind": "EdgeDevice",
                "metadata": {"name": sim.name, "namespace": FLEET_NS},
                "status": {
                    "enrollment": {
                        "certificateSerial": format(cert.serial_number, "x"),
                        "notAfter": wire.format_time(cert.not_valid_after_utc),
                        "instanceId": sim.instance_id,
                    }
                },
            }
            async with sem:
                await kube.apply(
                    f"/apis/edgefleet.io/v1alpha1/namespaces/{FLEET_NS}/edgedevices/{sim.name}/status",
                    body,
                    manager="edgefleet-gateway",
                )

        await asyncio.gather(*(one(s) for s in sims))

    async def set_desired(
        self, kube: KubeClient, sims: list[SimDevice], version: str
    ) -> dict[str, float]:
        sem = asyncio.Semaphore(32)
        done: dict[str, float] = {}

        async def one(sim: SimDevice) -> None:
            body = {
                "apiVersion": "edgefleet.io/v1alpha1",
                "kind": "EdgeDevice",
                "metadata": {"name": sim.name, "namespace": FLEET_NS},
                "status": {
                    "desiredRevision": int(version.split(".")[0]),
                    "desired": [
                        {
                            "model": "resnet",
                            "version": version,
                            "repository": f"edgefleet/models/{FLEET_NS}/resnet",
                            "indexDigest": DIGEST,
                            "imageDigest": DIGEST,
                        }
                    ],
                },
            }
            async with sem:
                await kube.apply(
                    f"/apis/edgefleet.io/v1alpha1/namespaces/{FLEET_NS}/edgedevices/{sim.name}/status",
                    body,
                    manager="edgefleet-rollouts",
                )
                done[sim.name] = time.monotonic()

        await asyncio.gather(*(one(s) for s in sims))
        return done

    async def gateway_metric(self, sim: SimDevice, name: str) -> str:
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
        text = await self.gateway_metric(sim, "edgefleet_gateway_")
        wanted = ("handshake_failures_total", "connections_refused_total", "requests_total")
        out = []
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if any(w in name for w in wanted[:2]) or ("requests_total" in name and '"503"' in name):
                out.append(f"{name.removeprefix('edgefleet_gateway_')} {float(value):.0f}")
        return "; ".join(out) or "none failed or refused"

    async def run(self) -> None:
        a = self.args
        n = a.devices
        kube = KubeClient.from_environment(str(self.cp.kubeconfig))
        t0 = time.monotonic()
        await self.make_devices(kube, n)
        print(f"# {n} EdgeDevices created in {time.monotonic() - t0:.1f}s", flush=True)
        gw_pki = await asyncio.to_thread(
            pki_client.load_or_create, self.api, GW_NS, ["127.0.0.1", "localhost"]
        )
        sims = self.sims(n)
        (self.work / "certs").mkdir(exist_ok=True)
        enrolled = min(a.enrol, n)
        rate = await self.enrol_with_tokens(sims[:enrolled], gw_pki.serving_ca_hash())
        self.rows.append(
            (
                "enrolment rate (real tokens, 16 concurrent)",
                f"{rate:.1f} devices/s ({enrolled} devices)",
            )
        )
        await self.enrol_directly(kube, sims[enrolled:], gw_pki)
        print("# enrolled", flush=True)

        stop = asyncio.Event()
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
        self.rows.append(("  handshakes / refusals during it", await self.admission(sims[0])))
        assert self.gateway is not None
        # The Online writes of the first connect drain (at EDGEFLEET_GATEWAY_WRITE_RATE).
        drained = time.monotonic()
        while True:
            await asyncio.sleep(2)
            text = await self.gateway_metric(sims[0], "edgefleet_gateway_status_writes_pending")
            if float(text.split()[-1]) == 0:
                break
        self.rows.append(
            ("first-connect Online writes drained", f"{time.monotonic() - drained:.0f} s")
        )
        await asyncio.sleep(a.wait + 5)

        # -- idle ----------------------------------------------------------------
        cpu0, _ = _proc(self.gateway.process.pid)
        w0 = await asyncio.to_thread(_apiserver_writes, self.cp)
        await asyncio.sleep(a.idle)
        cpu1, rss = _proc(self.gateway.process.pid)
        w1 = await asyncio.to_thread(_apiserver_writes, self.cp)
        core = (cpu1 - cpu0) / a.idle
        per_k = core * 100 / (n / 1000)
        self.rows.append(
            (
                f"gateway CPU, idle, {n} devices (re-poll every {a.wait:g}s)",
                f"{core * 100:.1f} % of a core = {per_k:.2f} % per 1k devices",
            )
        )
        _, peak = _proc(self.gateway.process.pid, "VmHWM")
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

        # -- wake-up ---------------------------------------------------------------
        before = {s.name: s.documents for s in sims}
        done = await self.set_desired(kube, sims, "1.0.0")
        deadline = time.monotonic() + 120
        while any(s.documents == before[s.name] for s in sims) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        waits = [s.last_document_at - done[s.name] for s in sims if s.documents > before[s.name]]
        p50, p99 = _pct(waits, 0.5) * 1000, _pct(waits, 0.99) * 1000
        self.rows.append(
            (
                f"wake-up: API accepted desired -> device holds document ({len(waits)}/{n})",
                f"p50 {p50:.0f} ms, p99 {p99:.0f} ms",
            )
        )
        hist = await self.gateway_metric(sims[0], "edgefleet_gateway_longpoll_wakeup_seconds")
        print(hist, flush=True)

        # -- restart ---------------------------------------------------------------
        killed = time.monotonic()
        self.gateway.stop(grace=30)
        up = await asyncio.to_thread(self.start_gateway)
        # Back = every device holds a long-poll on the new process (its own gauge).
        back_at = float("nan")
        while time.monotonic() - up < 600:
            try:
                text = await self.gateway_metric(sims[0], "edgefleet_gateway_longpolls_open")
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
        self.rows.append(("  handshakes / refusals during it", await self.admission(sims[0])))
        stop.set()
        for s in sims:
            s.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await kube.aclose()


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
        bench.start_gateway()
        try:
            uvloop.run(bench.run())  # the devices' side on uvloop too (less CPU and memory)
        finally:
            if bench.gateway is not None:
                bench.gateway.stop()
        print(f"\n| gateway, {args.devices} simulated devices | value |\n| --- | --- |")
        for what, value in bench.rows:
            print(f"| {what} | {value} |")
        print(json.dumps({"devices": args.devices, "rows": bench.rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
