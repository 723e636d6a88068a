"""Start-up time and memory of the tests' one-node cluster, beside the bare control plane.

Starts, in one run: a control plane as the API tests use it (etcd, kube-apiserver,
kube-controller-manager), then a control plane prepared for a node plus the node
(kubelet, containerd, kube-proxy in their own namespaces, kube-scheduler), waits for
the Node to be Ready and for a pod to run to completion, and prints a table: seconds
to each point and the resident memory of every component (from /proc, summed over
each component's process tree).

    .venv/bin/python bench/cluster.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.node import NODE_IP, Node
from edgefleet.testing.procs import Service, wait_until
from edgefleet.testing.registry import LocalRegistry

_PAUSE_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "bench", "namespace": "default"},
    "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
             "containers": [{"name": "c", "image": "", "command": ["/pause"]}]},
}  # fmt: skip


def _tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants, in MB."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _rss(services: list[Service]) -> dict[str, float]:
    return {s.name: _tree_rss_mb(s.process.pid) for s in services}


def one_run(registry: LocalRegistry) -> dict[str, float]:
    out: dict[str, float] = {}
    start = time.monotonic()
    with ControlPlane() as cp:
        out["control plane ready (s)"] = time.monotonic() - start
        for name, mb in _rss(cp._services).items():
            out[f"{name} RSS, API-only plane (MB)"] = mb
    start = time.monotonic()
    with ControlPlane(node_ip=NODE_IP) as cp:
        out["control plane for a node ready (s)"] = time.monotonic() - start
        node_start = time.monotonic()
        with Node(cp, registry) as node:
            node.wait_ready()
            out["node Ready, after its control plane (s)"] = time.monotonic() - node_start
            pod = json.loads(json.dumps(_PAUSE_POD))
            pod["spec"]["containers"][0]["image"] = f"{registry.host}/edgefleet/pause:3.10"
            pod["spec"]["containers"][0]["command"] = ["/pause"]
            cp.kubectl("apply", "-f", "-", input_text=json.dumps(pod))
            pod_start = time.monotonic()
            wait_until(
                lambda: "Running" in cp.kubectl("get", "pod", "bench", "-o",
                                                "jsonpath={.status.phase}").stdout,
                timeout=120, interval=0.2, what="bench pod running", alive=node.check_alive,
            )  # fmt: skip
            out["first pod Running after apply (s)"] = time.monotonic() - pod_start
            out["total to a running pod (s)"] = time.monotonic() - start
            for name, mb in {**_rss(cp._services), **_rss(node._services)}.items():
                out[f"{name} RSS (MB)"] = mb
            cp.kubectl("delete", "pod", "bench", "--grace-period=0", "--force", check=False)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with LocalRegistry() as registry:
        runs = [one_run(registry) for _ in range(args.runs)]
    print(f"| measure | median of {args.runs} | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for key in runs[0]:
        values = [r[key] for r in runs if key in r]
        print(f"| {key} | {statistics.median(values):.1f} | {min(values):.1f} | "
              f"{max(values):.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
