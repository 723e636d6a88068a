"""The simulated fleet of bench/gateway.py and how it is set up: the EdgeDevices, the
simulated devices, their enrolment (real bootstrap tokens for some, the set-up shortcut
for the rest) and the new ``status.desired`` the wake-up phase writes.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.clients import tokens
from edgefleet.clients.kube import KubeClient
from edgefleet.testing.simdevice import SimDevice, make_csr
from edgefleet_node.protocol import wire

__all__ = [
    "FLEET_NS",
    "enrol_directly",
    "enrol_with_tokens",
    "make_devices",
    "set_desired",
    "sims",
]

FLEET_NS = "fleet"
DIGEST = "sha256:" + "ab" * 32


async def make_devices(kube: KubeClient, n: int) -> None:
    """Create the EdgeDevices ``dev-00000`` … (32 applies at a time)."""
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


def sims(port: int, n: int, work: Path) -> list[SimDevice]:
    """One simulated device per EdgeDevice, all against the gateway on ``port``."""
    return [
        SimDevice("127.0.0.1", port, FLEET_NS, f"dev-{i:05d}", workdir=work / "certs")
        for i in range(n)
    ]


async def enrol_with_tokens(api: Any, gw_ns: str, devices: list[SimDevice], ca_hash: str) -> float:
    """Mint a bootstrap token per device, then enrol them 16 at a time; devices/s."""

    def make(device: str) -> Any:
        for attempt in range(10):  # one token store Secret: concurrent updates conflict
            try:
                return tokens.create_token(
                    api,
                    gateway_namespace=gw_ns,
                    namespace=FLEET_NS,
                    device=device,
                    ca_hash=ca_hash,
                )
            except tokens.TokenError:
                if attempt == 9:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    made = [await asyncio.to_thread(make, s.name) for s in devices]
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
    await asyncio.gather(*(one(s, t) for s, t in zip(devices, made, strict=True)))
    return len(devices) / (time.monotonic() - started)


async def enrol_directly(kube: KubeClient, devices: list[SimDevice], gw_pki: Any) -> None:
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

    await asyncio.gather(*(one(s) for s in devices))


async def set_desired(kube: KubeClient, devices: list[SimDevice], version: str) -> dict[str, float]:
    """Apply a new ``status.desired`` to every device as the rollout controller would;
    the monotonic instant the API server accepted each, by device name."""
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

    await asyncio.gather(*(one(s) for s in devices))
    return done
