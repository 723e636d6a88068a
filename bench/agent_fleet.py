"""Many agents in one process: what the simulated runtime costs at fleet scale.

Starts a control plane, a TLS registry and a gateway replica (in this process), pushes
one small signed image, creates N EdgeDevices with bootstrap tokens and enrols N
agents (each its own state directory, its own key and certificate), then runs all N
real agents (:class:`edgefleet_node.agent.loop.Agent` with
:class:`~edgefleet_node.agent.simulated.SimulatedRuntime`, two threads each) in **one
child process** and measures that process: RSS, threads, idle CPU, and the time from
writing every device's ``status.desired`` to every EdgeDevice showing the digest in
``status.current``.

    .venv/bin/python bench/agent_fleet.py [--devices 50 200] [--idle 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config

from edgefleet.clients import tokens
from edgefleet.clients.registry import RegistryClient
from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.gatewayrun import GatewayReplica, loopback_config
from edgefleet.testing.procs import free_port, wait_until
from edgefleet.testing.registry import LocalRegistry
from edgefleet.testing.tinyimage import push_image
from edgefleet_node.agent import cli
from edgefleet_node.agent import config as agent_config
from edgefleet_node.protocol import enroll

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the bench package beside it

from bench import measure  # noqa: E402

GW_NS = "edgefleet-system"
PLATFORM = "linux/amd64"

_CHILD = """
import sys, threading
from pathlib import Path
from edgefleet_node.agent import store, log
from edgefleet_node.agent.loop import Agent, LoopSettings
from edgefleet_node.agent.simulated import SimulatedRuntime
log.configure("error")
settings = LoopSettings(poll_wait=60, report_interval=60)
agents = [Agent(store.StateDir(Path(p)), SimulatedRuntime(), settings) for p in sys.argv[1:]]
threads = [threading.Thread(target=a.run, daemon=True) for a in agents]
for t in threads:
    t.start()
print("started", flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
for a in agents:
    a.stop()
for t in threads:
    t.join(timeout=30)
"""


def _apply(cp: ControlPlane, items: list[Any], *extra: str) -> None:
    body = {"apiVersion": "v1", "kind": "List", "items": items}
    cp.kubectl("apply", "--server-side", *extra, "-f", "-", input_text=json.dumps(body))


def run(
    n: int,
    cp: ControlPlane,
    api: client.ApiClient,
    gw: GatewayReplica,
    image,
    work: Path,
    idle: int,
) -> dict[str, float]:
    ns = f"fleet-{n}"
    cp.kubectl("create", "namespace", ns)
    names = [f"dev-{i:05d}" for i in range(n)]
    _apply(
        cp,
        [
            {
                "apiVersion": "edgefleet.io/v1alpha1",
                "kind": "EdgeDevice",
                "metadata": {"name": d, "namespace": ns},
                "spec": {"platform": PLATFORM},
            }
            for d in names
        ],
    )
    ca_hash = gw.pki().serving_ca_hash()
    url = f"https://127.0.0.1:{gw.port}"

    def enrol(name: str) -> str:
        token = tokens.create_token(
            api, gateway_namespace=GW_NS, namespace=ns, device=name, ca_hash=ca_hash
        )
        root = work / ns / name
        conf = agent_config.Config(state_dir=root, platform=PLATFORM)
        cli.enroll_device(conf, url, enroll.BootstrapToken.parse(str(token)))
        return str(root)

    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        roots = list(pool.map(enrol, names))
    enrol_rate = n / (time.monotonic() - t0)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *roots],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("started")
        objects = client.CustomObjectsApi(api)
        written: dict[str, float] = {}

        def assign(name: str) -> None:
            body = {
                "apiVersion": "edgefleet.io/v1alpha1",
                "kind": "EdgeDevice",
                "metadata": {"name": name, "namespace": ns},
                "status": {
                    "desiredRevision": 1,
                    "desired": [
                        {
                            "model": "cam",
                            "version": "1",
                            "repository": image.repository,
                            "indexDigest": image.index_digest,
                            "imageDigest": image.manifests[PLATFORM],
                            "config": {},
                        }
                    ],
                },
            }
            objects.patch_namespaced_custom_object_status(
                "edgefleet.io",
                "v1alpha1",
                ns,
                "edgedevices",
                name,
                body,
                field_manager="edgefleet-rollouts",
                force=True,
                _content_type="application/apply-patch+yaml",
            )
            written[name] = time.monotonic()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(assign, names))
        ready_at: dict[str, float] = {}

        def all_current() -> bool:
            out = cp.kubectl("get", "edgedevices", "-n", ns, "-o", "json").stdout
            now = time.monotonic()
            for item in json.loads(out)["items"]:
                cur = (item.get("status") or {}).get("current") or []
                if cur and cur[0].get("imageDigest") == image.manifests[PLATFORM]:
                    name = item["metadata"]["name"]
                    ready_at.setdefault(name, now - written[name])
            return len(ready_at) == n

        wait_until(all_current, timeout=600, what=f"{n} devices current", interval=0.5)
        time.sleep(5)  # let the post-update reports settle before measuring idle
        cpu0, rss0 = measure.cpu_seconds(child.pid), measure.memory_bytes(child.pid)
        threads = measure.status_value(child.pid, "Threads")
        t1 = time.monotonic()
        time.sleep(idle)
        cpu1, rss1 = measure.cpu_seconds(child.pid), measure.memory_bytes(child.pid)
        idle_cpu = (cpu1 - cpu0) / (time.monotonic() - t1)
        times = sorted(ready_at.values())
        return {
            "n": n,
            "enrol_rate": enrol_rate,
            "rss": max(rss0, rss1),
            "threads": threads,
            "idle_cpu": idle_cpu,
            "p50": statistics.median(times),
            "p99": measure.percentile_rank(times, 0.99),
            "max": times[-1],
        }
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=120)
        if child.stdout is not None:
            child.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--idle", type=int, default=30)
    args = parser.parse_args()
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="edgefleet-bench-fleet-") as tmp,
        ControlPlane() as cp,
        LocalRegistry() as reg,
    ):
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
        cp.kubectl("create", "namespace", GW_NS)
        api = config.new_client_from_config(config_file=str(cp.kubeconfig))  # type: ignore[no-untyped-call]
        key = ensure_signing_key(client.CoreV1Api(api), GW_NS, "edgefleet-signing-key")
        cfg = dataclasses.replace(
            loopback_config(GW_NS, "gw-fleet"),
            port=free_port(),
            registry_url=reg.url,
            registry_ca=str(reg.ca_path),
        )
        with (
            RegistryClient(reg.url, ca_bundle=reg.ca_path) as rc,
            GatewayReplica(cfg, cp.kubeconfig) as gw,
        ):
            for n in args.devices:
                image = push_image(
                    rc, f"edgefleet/models/fleet-{n}/cam", key, platforms=(PLATFORM,)
                )
                results.append(run(n, cp, api, gw, image, Path(tmp), args.idle))
    print(
        "| agents in one process | RSS (per agent) | threads | idle CPU (per agent) "
        "| desired → current p50 / p99 / max | enrolments/s |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        n = r["n"]
        print(
            f"| {n:.0f} | {r['rss'] / 1e6:.0f} MB ({r['rss'] / n / 1e6:.2f} MB) | "
            f"{r['threads']:.0f} | {r['idle_cpu'] * 100:.1f} % ({r['idle_cpu'] * 100 / n:.3f} %) | "
            f"{r['p50']:.2f} / {r['p99']:.2f} / {r['max']:.2f} s | {r['enrol_rate']:.1f} |"
        )
    print(
        f"\nMade by `.venv/bin/python bench/agent_fleet.py --devices "
        f"{' '.join(map(str, args.devices))} --idle {args.idle}`."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
