"""Blob throughput through the gateway's /v2/ proxy ÷ straight from the registry.

Starts its own TLS registry, pushes a signed image whose layer holds ``--mb`` MB of
random bytes (stored, not compressed), serves the gateway's real ``/v2/`` routes
(:func:`edgefleet.testing.ociapp.serve_oci`: the gateway TLS context with a device
certificate, the real proxy, uvloop) and downloads the layer with ``curl`` (a C
client, so the client costs the same on both paths and holds no GIL of ours),
alternating direct and proxied runs. Prints a Markdown table of medians.

    .venv/bin/python bench/gateway_blobs.py --mb 200 --runs 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
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
from edgefleet.testing.tinyimage import push_image


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


def _process_cpu(pid: int) -> float:
    """CPU seconds of a running process (the registry), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the blob in MB (10^6 B)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--asyncio", action="store_true", help="plain asyncio, not uvloop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp, LocalRegistry() as reg:
        work = Path(tmp)
        key = signing.generate_key()
        with RegistryClient(reg.url, ca_bundle=reg.ca_path) as client:
            image = push_image(client, "bench/blobs", key, big_layer_bytes=args.mb * 10**6)
        gw = gateway_pki.ephemeral(["127.0.0.1"], [signing.public_key_pem(key)])
        ca = work / "gateway-ca.crt"
        ca.write_bytes(gw.gateway_ca_bundle())
        crt, keyfile = _device_cert(gw, work)
        devices = {
            ("bench", "bench-1"): [Assignment("bench/blobs", (image.index_digest,), "linux/amd64")]
        }
        path = f"/v2/bench/blobs/blobs/{image.big_layer}"
        direct, proxied = [], []
        with serve_oci(gw, reg.url, reg.ca_path, devices, use_uvloop=not args.asyncio) as app:
            gateway_tls = ("--cacert", str(ca), "--cert", str(crt), "--key", str(keyfile))
            _curl(app.url + path, *gateway_tls)  # warm: reachability and connections
            assert reg._service is not None
            pid = reg._service.process.pid
            cpu = {"gateway": 0.0, "direct": 0.0, "proxied": 0.0}
            for _ in range(args.runs):
                start = _process_cpu(pid) + _children_cpu()
                direct.append(_curl(reg.url + path, "--cacert", str(reg.ca_path)))
                cpu["direct"] += _process_cpu(pid) + _children_cpu() - start
                start, gateway = _process_cpu(pid) + _children_cpu(), _cpu()
                proxied.append(_curl(app.url + path, *gateway_tls))
                cpu["gateway"] += _cpu() - gateway
                cpu["proxied"] += _process_cpu(pid) + _children_cpu() - start + _cpu() - gateway
        sizes = {size for _, size in direct + proxied}
        if len(sizes) != 1:
            print(f"downloads differ in size: {sorted(sizes)}", file=sys.stderr)
            return 1
        size = sizes.pop()
        d = statistics.median(size / s for s, _ in direct) / 1e6
        p = statistics.median(size / s for s, _ in proxied) / 1e6
        loop = "asyncio" if args.asyncio else "uvloop"
        print(f"| blob {size / 1e6:.0f} MB, straight from the registry (TLS), median of "
              f"{args.runs} | {d:.0f} MB/s | — |")  # fmt: skip
        print(f"| the same through the gateway /v2/ (mTLS, {loop}), median of {args.runs} "
              f"| {p:.0f} MB/s | — |")  # fmt: skip
        print(f"|   gateway ÷ registry | {p / d:.2f} | goal ≥ 0.8 |")
        gb = size * args.runs / 1e9
        print(f"| gateway CPU per GB proxied ({loop}) | {cpu['gateway'] / gb:.2f} s | — |")
        print(
            f"| CPU per GB, all processes (registry + gateway + curl) | "
            f"{cpu['proxied'] / gb:.2f} s | direct (registry + curl): {cpu['direct'] / gb:.2f} s |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
