"""Benchmark of the edge-node agent against the real gateway, API server and registry.

Starts a control plane (etcd + kube-apiserver), a TLS registry and a gateway replica
in this process; builds two versions of a real ONNX model (``--model-mb``, differing
only in their weights) with the operator's builder, which pushes and signs them
(bench/agent_images.py); then for each runtime enrols an agent and runs it as a
**separate process** (``edgefleet-node run``, so its memory and CPU are its own):

- ``simulated``: the same agent code with no containers (start and probe ~0), the
  baseline; always run;
- ``docker`` (``--runtime docker``): the real Docker runtime against this machine's
  engine: the verified blobs streamed into the engine as a ``docker load`` archive,
  the container started beside the old one, ``/healthz`` and a real inference probe.

Per agent and version: time from writing ``status.desired`` to the EdgeDevice's
``current`` digest, split into notify / resolve / verify / preflight / download /
load / start / probe / report (bench/agent_measure.py says which log event gives
which); peak ``VmRSS`` sampled every 20 ms during the activation and ``VmHWM``.
Then both agents idle at once for ``--idle`` seconds (RSS, CPU); then the
weights-only update: bytes received ÷ the new compressed model layer. The load
average (``uptime``) is printed at the start and end of the run.

    flock /tmp/edgefleet-heavy.lock .venv/bin/python -m bench.agent \\
        [--runtime docker] [--model-mb 1024] [--idle 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import agent_table
from bench.agent_images import PLATFORM, ModelImage, build_images
from bench.agent_measure import Sampler, events, load_average, phases, sha256_seconds
from bench.measure import cpu_seconds, memory_bytes
from kubernetes import client, config

from edgefleet.clients import tokens
from edgefleet.clients.registry import RegistryClient
from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.desired import apply_desired
from edgefleet.testing.gatewayrun import GatewayReplica, loopback_config
from edgefleet.testing.procs import free_port, wait_until
from edgefleet.testing.registry import LocalRegistry

ROOT = Path(__file__).resolve().parent.parent
GW_NS = "edgefleet-system"
NS = "bench"
AGENT = str(ROOT / ".venv/bin/edgefleet-node")


@dataclasses.dataclass
class Node:
    runtime: str
    device: str
    state: Path
    log: Path
    scope: str
    proc: subprocess.Popen[bytes] | None = None
    out: dict[str, Any] = dataclasses.field(default_factory=dict)


def _set_desired(cp: ControlPlane, node: Node, revision: int, image: ModelImage) -> None:
    workload = {
        "model": "model",
        "version": str(revision),
        "repository": image.repository,
        "indexDigest": image.index,
        "imageDigest": image.manifest,
        "probe": image.probe,
        "config": {"EDGEFLEET_THRESHOLD": "0.5"},
    }
    apply_desired(cp, NS, node.device, revision, [workload])


def _current(cp: ControlPlane, device: str) -> str | None:
    out = cp.kubectl("get", "edgedevice", device, "-n", NS, "-o", "json").stdout
    current = (json.loads(out).get("status") or {}).get("current") or []
    return current[0].get("imageDigest") if current else None


def _start(cp: ControlPlane, api: Any, gw: GatewayReplica, work: Path, runtime: str) -> Node:
    node = Node(
        runtime, f"dev-{runtime}", work / runtime, work / f"{runtime}.log", secrets.token_hex(4)
    )
    device = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": node.device, "namespace": NS},
        "spec": {"platform": PLATFORM},
    }
    cp.kubectl("apply", "--server-side", "-f", "-", input_text=json.dumps(device))
    token = tokens.create_token(
        api,
        gateway_namespace=GW_NS,
        namespace=NS,
        device=node.device,
        ca_hash=gw.pki().serving_ca_hash(),
    )
    gateway = f"https://127.0.0.1:{gw.port}"
    base = [AGENT, "--state-dir", str(node.state)]
    enrol = [*base, "enroll", "--gateway", gateway, "--token", str(token)]
    subprocess.run([*enrol, "--platform", PLATFORM], check=True)
    env = {
        **os.environ,
        "EDGEFLEET_NODE_RUNTIME_SCOPE": f"bench{node.scope}",
        "EDGEFLEET_NODE_PROBE_TIMEOUT": "300",
    }
    run = [*base, "run", "--runtime", runtime, "--poll-wait", "60", "--report-interval", "60"]
    with node.log.open("w") as sink:
        node.proc = subprocess.Popen(run, stderr=sink, env=env)
    wait_until(lambda: bool(events(node.log, "gateway reached")), timeout=60, what="agent online")
    return node


def _activate(cp: ControlPlane, node: Node, revision: int, image: ModelImage) -> dict[str, Any]:
    assert node.proc is not None
    cpu0 = cpu_seconds(node.proc.pid)
    with Sampler(node.proc.pid) as sampled:
        written = time.time()
        _set_desired(cp, node, revision, image)
        wait_until(
            lambda: _current(cp, node.device) == image.manifest,
            timeout=900,
            what=f"{node.device} v{revision} current",
            interval=0.05,
        )
        seen = time.time()
    return {
        **phases(node.log, written, seen),
        "total": seen - written,
        "peak_rss": sampled.peak,
        "hwm": memory_bytes(node.proc.pid, "VmHWM", default=0),
        "samples": sampled.samples,
        "cpu": cpu_seconds(node.proc.pid) - cpu0,
    }


def _idle(nodes: list[Node], seconds: int) -> None:
    time.sleep(3)  # let the post-update report go out first
    procs = [n.proc for n in nodes if n.proc is not None]
    cpu0, t0 = [cpu_seconds(p.pid) for p in procs], time.monotonic()
    peaks = [0] * len(procs)
    while time.monotonic() < t0 + seconds:
        peaks = [
            max(m, memory_bytes(p.pid, "VmRSS", default=0))
            for m, p in zip(peaks, procs, strict=True)
        ]
        time.sleep(1)
    elapsed = time.monotonic() - t0
    for node, proc, c0, peak in zip(nodes, procs, cpu0, peaks, strict=True):
        node.out["idle_rss"] = peak
        node.out["idle_cpu_s"] = cpu_seconds(proc.pid) - c0
        node.out["idle_s"] = elapsed


def _stop(node: Node) -> None:
    if node.proc is not None:
        node.proc.terminate()
        node.proc.wait(timeout=60)
    if node.runtime != "docker":
        return
    scope = f"bench{node.scope}"  # the runtime's containers and tags (docker_spec)
    label = f"label=io.edgefleet.managed-by=edgefleet-node.{scope}"
    ps = ["docker", "ps", "-aq", "--filter", label]
    ids = subprocess.run(ps, capture_output=True, text=True, check=False).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
    tags = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"edgefleet/workload-{scope}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if tags:
        subprocess.run(["docker", "rmi", *tags], capture_output=True, check=False)


def run(args: argparse.Namespace) -> dict[str, Any]:
    runtimes = ["simulated"] if args.runtime == "simulated" else ["simulated", "docker"]
    result: dict[str, Any] = {"load_start": load_average(), "nodes": {}}
    with (
        tempfile.TemporaryDirectory(prefix="edgefleet-bench-agent-") as tmp,
        ControlPlane() as cp,
        LocalRegistry(storage_dir=Path(tmp) / "registry") as reg,
    ):
        work = Path(tmp)
        crds = str(ROOT / "crds")
        cp.kubectl("apply", "--server-side", "-f", crds)
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
        for ns in (GW_NS, NS):
            cp.kubectl("create", "namespace", ns)
        api = config.new_client_from_config(config_file=str(cp.kubeconfig))  # type: ignore[no-untyped-call]
        key = ensure_signing_key(client.CoreV1Api(api), GW_NS, "edgefleet-signing-key")
        with RegistryClient(reg.url, ca_bundle=reg.ca_path) as rc:
            v1, v2 = build_images(rc, key, work, args.model_mb, (11, 12))
        result["images"] = (v1, v2)
        gw_cfg = dataclasses.replace(
            loopback_config(GW_NS, "gw-bench"),
            port=free_port(),
            registry_url=reg.url,
            registry_ca=str(reg.ca_path),
        )
        nodes: list[Node] = []
        with GatewayReplica(gw_cfg, cp.kubeconfig) as gw:
            try:
                for runtime in runtimes:
                    nodes.append(_start(cp, api, gw, work, runtime))
                for node in nodes:
                    assert node.proc is not None
                    node.out["start_rss"] = memory_bytes(node.proc.pid, "VmRSS", default=0)
                for node in nodes:
                    node.out["v1"] = _activate(cp, node, 1, v1)
                _idle(nodes, args.idle)
                for node in nodes:
                    node.out["v2"] = _activate(cp, node, 2, v2)
                    assert node.proc is not None
                    node.out["hwm_end"] = memory_bytes(node.proc.pid, "VmHWM", default=0)
            except Exception:
                for node in nodes:
                    print(node.log.read_text()[-20000:], file=sys.stderr)
                raise
            finally:
                for node in nodes:
                    _stop(node)
        result["nodes"] = {n.runtime: n.out for n in nodes}
    result["load_end"] = load_average()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runtime", choices=("simulated", "docker"), default="simulated")
    parser.add_argument("--model-mb", type=int, default=192, help="ONNX model size, MiB")
    parser.add_argument("--idle", type=int, default=60)
    args = parser.parse_args()
    result = run(args)
    size = 256 * 1024 * 1024
    result["sha256_rate"] = size / sha256_seconds(size)
    print(agent_table.render(result, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
