"""Benchmark of the edge-node agent against the real gateway, API server and registry.

Starts a control plane (etcd + kube-apiserver), a TLS registry and a gateway replica
in this process, pushes two signed images that share a "base" layer and differ in the
"model" layer (random bytes, stored uncompressed so the sizes are what crosses the
wire), enrols an agent and runs it as a **separate process**
(``edgefleet-node run --runtime simulated``, so its memory and CPU are its own), then:

- v1: time from writing ``status.desired`` to the EdgeDevice's ``current`` digest,
  split into notify (write -> document accepted, from the agent's log), resolve and
  verify (index, manifest, cosign signature), download (digest-checked while
  streaming), start and probe (simulated runtime: no containers, so ~0), and the
  agent's peak RSS during the pull (sampled every 20 ms from /proc);
- idle: RSS and CPU over ``--idle`` seconds of long-polling and reporting;
- v2 (weights-only update): bytes the agent received ÷ the new model layer.

    .venv/bin/python bench/agent.py [--base-mb 64] [--model-mb 192] [--idle 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from edgefleet.clients import tokens
from edgefleet.clients.registry import RegistryClient
from edgefleet.clients.signer import sign_and_push
from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.domain import oci
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.gatewayrun import GatewayReplica, loopback_config
from edgefleet.testing.procs import free_port, wait_until
from edgefleet.testing.registry import LocalRegistry

ROOT = Path(__file__).resolve().parent.parent
GW_NS = "edgefleet-system"
NS = "bench"
PLATFORM = "linux/amd64"
AGENT = [str(ROOT / ".venv/bin/edgefleet-node")]


@dataclasses.dataclass
class Image:
    repository: str
    index: str
    manifest: str
    model_layer_size: int


def _push(reg: RegistryClient, repo: str, key: Any, base: oci.Layer, model_mb: int) -> Image:
    model = oci.build_layer(
        [oci.FileEntry.file("model/weights.bin", os.urandom(model_mb * 1024 * 1024))],
        compresslevel=0,
    )
    platform = oci.Platform.parse(PLATFORM)
    layers = [base, model]
    for item in layers:
        reg.push_blob(repo, item.blob)
    cfg = oci.image_config(platform, [x.diff_id for x in layers], cmd=["/bin/true"])
    reg.push_blob(repo, cfg)
    manifest = oci.image_manifest(cfg, layers)
    manifest_digest = reg.put_manifest(repo, manifest.digest, manifest)
    index = oci.image_index([(manifest.descriptor(), platform)])
    index_digest = reg.put_manifest(repo, index.digest, index)
    for digest in (index_digest, manifest_digest):
        sign_and_push(reg, repo, digest, key)
    return Image(repo, index_digest, manifest_digest, model.blob.size)


def _set_desired(cp: ControlPlane, revision: int, image: Image, version: str) -> None:
    body = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": "dev", "namespace": NS},
        "status": {
            "desiredRevision": revision,
            "desired": [
                {
                    "model": "model",
                    "version": version,
                    "repository": image.repository,
                    "indexDigest": image.index,
                    "imageDigest": image.manifest,
                    "config": {},
                }
            ],
        },
    }
    cp.kubectl(
        "apply",
        "--server-side",
        "--subresource=status",
        "--field-manager=edgefleet-rollouts",
        "-f",
        "-",
        input_text=json.dumps(body),
    )


def _current(cp: ControlPlane) -> str | None:
    out = cp.kubectl("get", "edgedevice", "dev", "-n", NS, "-o", "json").stdout
    current = (json.loads(out).get("status") or {}).get("current") or []
    return current[0].get("imageDigest") if current else None


class Sampler:
    """Peak RSS of a process, sampled from /proc every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _events(log: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if doc.get("event") == event:
                out.append(doc)
    return out


def _activation(log: Path, written: float) -> dict[str, float]:
    accepted = next(
        e for e in _events(log, "document accepted") if e["ts"] >= written and e["workloads"]
    )
    active = next(e for e in _events(log, "update active") if e["version"] == accepted["version"])
    return {
        "notify": accepted["ts"] - written,
        "resolve": active["resolve_s"],
        "download": active["download_s"],
        "start": active["start_s"],
        "probe": active["probe_s"],
        "bytes": active["bytes"],
    }


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def run(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="edgefleet-bench-agent-") as tmp,
        ControlPlane() as cp,
        LocalRegistry() as reg,
    ):
        work = Path(tmp)
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
        for ns in (GW_NS, NS):
            cp.kubectl("create", "namespace", ns)
        api = config.new_client_from_config(config_file=str(cp.kubeconfig))  # type: ignore[no-untyped-call]
        key = ensure_signing_key(client.CoreV1Api(api), GW_NS, "edgefleet-signing-key")
        base = oci.build_layer(
            [oci.FileEntry.file("base/runtime.bin", os.urandom(args.base_mb * 1024 * 1024))],
            compresslevel=0,
        )
        repo = f"edgefleet/models/{NS}/model"
        with RegistryClient(reg.url, ca_bundle=reg.ca_path) as rc:
            v1 = _push(rc, repo, key, base, args.model_mb)
            v2 = _push(rc, repo, key, base, args.model_mb)
        gw_cfg = dataclasses.replace(
            loopback_config(GW_NS, "gw-bench"),
            port=free_port(),
            registry_url=reg.url,
            registry_ca=str(reg.ca_path),
        )
        with GatewayReplica(gw_cfg, cp.kubeconfig) as gw:
            device = {
                "apiVersion": "edgefleet.io/v1alpha1",
                "kind": "EdgeDevice",
                "metadata": {"name": "dev", "namespace": NS},
                "spec": {"platform": PLATFORM},
            }
            cp.kubectl("apply", "--server-side", "-f", "-", input_text=json.dumps(device))
            token = tokens.create_token(
                api,
                gateway_namespace=GW_NS,
                namespace=NS,
                device="dev",
                ca_hash=gw.pki().serving_ca_hash(),
            )
            state = work / "state"
            subprocess.run(
                [
                    *AGENT,
                    "--state-dir",
                    str(state),
                    "enroll",
                    "--gateway",
                    f"https://127.0.0.1:{gw.port}",
                    "--token",
                    str(token),
                    "--platform",
                    PLATFORM,
                ],
                check=True,
            )
            log = work / "agent.log"
            with log.open("w") as sink:
                agent = subprocess.Popen(
                    [
                        *AGENT,
                        "--state-dir",
                        str(state),
                        "run",
                        "--runtime",
                        "simulated",
                        "--poll-wait",
                        "60",
                        "--report-interval",
                        "60",
                    ],
                    stderr=sink,
                )
            try:
                wait_until(
                    lambda: bool(_events(log, "gateway reached")), timeout=60, what="agent online"
                )
                idle_start_rss = rss(agent.pid)
                with Sampler(agent.pid) as pull_rss:
                    written = time.time()
                    _set_desired(cp, 1, v1, "1")
                    wait_until(
                        lambda: _current(cp) == v1.manifest,
                        timeout=600,
                        what="v1 Ready",
                        interval=0.05,
                    )
                    ready = time.time() - written
                first = _activation(log, written)
                # Idle: long-polls and reports only.
                time.sleep(3)  # let the post-update report go out before measuring idle
                cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
                idle_rss = []
                deadline = t0 + args.idle
                while time.monotonic() < deadline:
                    idle_rss.append(rss(agent.pid))
                    time.sleep(1)
                idle_cpu = (cpu_seconds(agent.pid) - cpu0) / (time.monotonic() - t0)
                written = time.time()
                _set_desired(cp, 2, v2, "2")
                wait_until(
                    lambda: _current(cp) == v2.manifest, timeout=600, what="v2 Ready", interval=0.05
                )
                second = _activation(log, written)
            except Exception:
                print(log.read_text(), file=sys.stderr)
                raise
            finally:
                agent.terminate()
                agent.wait(timeout=30)
    total_v1 = (args.base_mb + args.model_mb) * 1024 * 1024
    rows += [
        ("agent RSS at start (enrolled, before any workload)", _mb(idle_start_rss), "goal ≤ 40 MB"),
        (
            "agent RSS idle after the update",
            _mb(max(idle_rss)),
            f"goal ≤ 40 MB; over {args.idle} s",
        ),
        (f"agent peak RSS during a {_mb(total_v1)} pull", _mb(pull_rss.peak), "goal ≤ 60 MB"),
        (
            "agent idle CPU (long-poll + reports)",
            f"{idle_cpu * 100:.2f} % of a core",
            f"over {args.idle} s",
        ),
        (
            "v1 ready: total (status.desired written -> EdgeDevice current)",
            f"{ready:.2f} s",
            f"{_mb(first['bytes'])} downloaded",
        ),
        ("  notify (write -> document accepted by the agent)", f"{first['notify']:.2f} s", ""),
        ("  resolve + verify (index, manifest, cosign signature)", f"{first['resolve']:.3f} s", ""),
        (
            "  download (sha256 while streaming, fsync)",
            f"{first['download']:.2f} s",
            f"{first['bytes'] / max(first['download'], 1e-9) / 1e6:.0f} MB/s",
        ),
        (
            "  start + probe (simulated runtime)",
            f"{first['start'] + first['probe']:.3f} s",
            "no containers: Docker numbers are in the Docker runtime's tests",
        ),
        (
            "weights-only update: bytes received (all documents and blobs) ÷ model layer",
            f"{second['bytes'] / v2.model_layer_size:.4f}",
            f"{_mb(second['bytes'])} / {_mb(v2.model_layer_size)}; goal ≤ 1.05; a full re-pull "
            f"would be {(total_v1 / v2.model_layer_size):.2f}",
        ),
    ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-mb", type=int, default=64)
    parser.add_argument("--model-mb", type=int, default=192)
    parser.add_argument("--idle", type=int, default=60)
    args = parser.parse_args()
    rows = run(args)
    print("| measure | value | notes |\n| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        f"\nMade by `.venv/bin/python bench/agent.py --base-mb {args.base_mb} "
        f"--model-mb {args.model_mb} --idle {args.idle}`."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
