"""Blob throughput through the gateway's /v2/ proxy ÷ straight from the registry.

Starts its own TLS registry, pushes a signed image whose layer holds ``--mb`` MB of
random bytes (stored, not compressed), serves the gateway's real ``/v2/`` routes
(:func:`edgefleet.testing.ociapp.serve_oci`: the gateway TLS context with a device
certificate, the real proxy, uvloop) — or with ``--full`` the whole gateway
(``edgefleet.gateway.server`` in a thread, a real API server, a device enrolled with a
bootstrap token whose EdgeDevice names the image) — and downloads the layer with
``curl`` (a C client, so the client costs the same on both paths and holds no GIL of
ours), alternating direct and proxied runs. Prints a Markdown table of medians and the
CPU seconds per GB of every process on each path (a ratio that does not depend on what
else runs on the machine).

    .venv/bin/python bench/gateway_blobs.py --mb 200 --runs 7 [--full]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgefleet.clients import pki as gateway_pki
from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import pki, signing
from edgefleet.gateway.oci_reach import Assignment
from edgefleet.testing.ociapp import serve_oci
from edgefleet.testing.registry import LocalRegistry
from edgefleet.testing.tinyimage import PushedImage, push_image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the bench package beside it

from bench import measure  # noqa: E402


def _device_cert(gw: gateway_pki.GatewayPki, work: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "bench-1"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bench"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    cert = gw.issue(
        csr.public_bytes(serialization.Encoding.PEM), namespace="bench", device="bench-1"
    )
    crt, keyfile = work / "device.crt", work / "device.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(pki.key_pem(key))
    keyfile.chmod(0o600)
    return crt, keyfile


def _curl(url: str, *tls: str) -> tuple[float, int]:
    """(seconds, bytes) of one download to /dev/null."""
    done = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--fail",
            "--location",
            "--output",
            "/dev/null",
            "--write-out",
            "%{time_total} %{size_download}",
            *tls,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    seconds, size = done.stdout.split()
    return float(seconds), int(size)


def _cpu() -> float:
    """CPU seconds of this process (the gateway's thread; the main thread waits on curl)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    """CPU seconds of the finished curl processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def _proxy_only(
    reg: LocalRegistry, image: PushedImage, key_pem: bytes, work: Path, uvloop: bool
) -> Iterator[tuple[str, tuple[str, ...], str]]:
    """The proxy with the gateway's TLS context, alone in this process."""
    gw = gateway_pki.ephemeral(["127.0.0.1"], [key_pem])
    ca = work / "gateway-ca.crt"
    ca.write_bytes(gw.gateway_ca_bundle())
    crt, keyfile = _device_cert(gw, work)
    assigned = [Assignment(image.repository, (image.index_digest,), "linux/amd64")]
    with serve_oci(gw, reg.url, reg.ca_path, {("bench", "bench-1"): assigned},
                   use_uvloop=uvloop) as app:  # fmt: skip
        tls = ("--cacert", str(ca), "--cert", str(crt), "--key", str(keyfile))
        yield app.url, tls, f"the /v2/ proxy alone, {'uvloop' if uvloop else 'asyncio'}"


@contextmanager
def _full_gateway(
    reg: LocalRegistry, image: PushedImage, work: Path
) -> Iterator[tuple[str, tuple[str, ...], str]]:
    """The whole gateway (edgefleet.gateway.server) over a real API server: an
    EdgeDevice whose desired state names the image, enrolled with a bootstrap token."""
    from kubernetes import client, config

    from edgefleet.clients import tokens
    from edgefleet.clients.signingkey import ensure_signing_key
    from edgefleet.gateway.config import Limits
    from edgefleet.testing.controlplane import ControlPlane
    from edgefleet.testing.gatewayrun import GatewayReplica, loopback_config
    from edgefleet.testing.simdevice import SimDevice

    crds = str(ROOT / "crds")
    with ControlPlane() as cp:
        cp.kubectl("apply", "--server-side", "-f", crds)
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
        for ns in ("edgefleet-system", "bench"):
            cp.kubectl("create", "namespace", ns)
        api = config.new_client_from_config(config_file=str(cp.kubeconfig))  # type: ignore[no-untyped-call]
        ensure_signing_key(client.CoreV1Api(api), "edgefleet-system", "edgefleet-signing-key")
        meta = {"name": "bench-1", "namespace": "bench"}
        device = {"apiVersion": "edgefleet.io/v1alpha1", "kind": "EdgeDevice", "metadata": meta}
        cp.kubectl("apply", "--server-side", "-f", "-", input_text=json.dumps(
            {**device, "spec": {"platform": "linux/amd64"}}))  # fmt: skip
        workload = {"model": "blobs", "version": "1", "repository": image.repository,
                    "indexDigest": image.index_digest,
                    "imageDigest": image.manifests["linux/amd64"]}  # fmt: skip
        status = {**device, "status": {"desired": [workload], "desiredRevision": 1}}
        cp.kubectl(
            "apply", "--server-side", "--subresource=status",
            "--field-manager=edgefleet-rollouts", "-f", "-", input_text=json.dumps(status),
        )  # fmt: skip
        cfg = dataclasses.replace(
            loopback_config("edgefleet-system", "gw-bench"),
            registry_url=reg.url,
            registry_ca=str(reg.ca_path),
            limits=Limits(),
        )
        with GatewayReplica(cfg, cp.kubeconfig) as gw:
            token = tokens.create_token(
                api,
                gateway_namespace="edgefleet-system",
                namespace="bench",
                device="bench-1",
                ca_hash=gateway_pki.gateway_pin(api, "edgefleet-system"),
            )
            sim = SimDevice("127.0.0.1", gw.port, "bench", "bench-1", "linux/amd64")
            loop = asyncio.new_event_loop()
            try:
                result = loop.run_until_complete(sim.enroll(str(token)))
            finally:
                loop.close()
            if result.status != 200:
                raise RuntimeError(f"enrolment failed: {result.status} {result.body[:200]!r}")
            assert sim.gateway_ca is not None
            assert sim.cert_pem is not None
            ca, crt, keyfile = work / "ca.crt", work / "device.crt", work / "device.key"
            ca.write_bytes(sim.gateway_ca)
            crt.write_bytes(sim.cert_pem)
            keyfile.write_bytes(pki.key_pem(sim.key))
            keyfile.chmod(0o600)
            tls = ("--cacert", str(ca), "--cert", str(crt), "--key", str(keyfile))
            yield f"https://127.0.0.1:{gw.port}", tls, "the whole gateway, asyncio"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the blob in MB (10^6 B)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--asyncio", action="store_true", help="plain asyncio, not uvloop")
    parser.add_argument(
        "--full", action="store_true", help="the whole gateway with an API server, not the proxy"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp, LocalRegistry() as reg:
        work = Path(tmp)
        key = signing.generate_key()
        with RegistryClient(reg.url, ca_bundle=reg.ca_path) as client:
            image = push_image(client, "bench/blobs", key, big_layer_bytes=args.mb * 10**6)
        path = f"/v2/bench/blobs/blobs/{image.big_layer}"
        direct, proxied = [], []
        serving = (
            _full_gateway(reg, image, work)
            if args.full
            else _proxy_only(reg, image, signing.public_key_pem(key), work, not args.asyncio)
        )
        with serving as (url, gateway_tls, what):
            _curl(url + path, *gateway_tls)  # warm: reachability and connections
            assert reg._service is not None
            pid = reg._service.process.pid
            cpu = {"gateway": 0.0, "direct": 0.0, "proxied": 0.0}
            for _ in range(args.runs):
                start = measure.cpu_seconds(pid) + _children_cpu()
                direct.append(_curl(reg.url + path, "--cacert", str(reg.ca_path)))
                cpu["direct"] += measure.cpu_seconds(pid) + _children_cpu() - start
                start, gateway = measure.cpu_seconds(pid) + _children_cpu(), _cpu()
                proxied.append(_curl(url + path, *gateway_tls))
                cpu["gateway"] += _cpu() - gateway
                cpu["proxied"] += (
                    measure.cpu_seconds(pid) + _children_cpu() - start + _cpu() - gateway
                )
        sizes = {size for _, size in direct + proxied}
        if len(sizes) != 1:
            print(f"downloads differ in size: {sorted(sizes)}", file=sys.stderr)
            return 1
        size = sizes.pop()
        d = statistics.median(size / s for s, _ in direct) / 1e6
        p = statistics.median(size / s for s, _ in proxied) / 1e6
        print(f"| blob {size / 1e6:.0f} MB, straight from the registry (TLS), median of "
              f"{args.runs} | {d:.0f} MB/s | — |")  # fmt: skip
        print(f"| the same through {what} (mTLS), median of {args.runs} "
              f"| {p:.0f} MB/s | — |")  # fmt: skip
        print(f"|   gateway ÷ registry | {p / d:.2f} | goal ≥ 0.8 |")
        gb = size * args.runs / 1e9
        print(f"| gateway CPU per GB proxied | {cpu['gateway'] / gb:.2f} s | — |")
        print(
            f"| CPU per GB, all processes (registry + gateway + curl) | "
            f"{cpu['proxied'] / gb:.2f} s | direct (registry + curl): {cpu['direct'] / gb:.2f} s |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
