"""Benchmark of rollout convergence: the real API server, the operator process (rollout
controller only), and N fake-fleet devices (edgefleet.testing.fakefleet, standing in
for the gateway and agents: they report Healthy as soon as they see their desired
workload).

For each N, one Rollout without pauses (``maxUnavailable: 100%``,
``minHealthyDuration: 1s``) of a model whose build status is written by the benchmark.
Measured:

- reaction: Rollout applied -> first device's desired entry seen by the fleet (watch);
- apply -> notified per device (p50/p99): when the fleet saw each device's desired entry;
- notified -> Ready per device (p50/p99): until the fleet wrote that device's Healthy
  report (its own queueing and API write, no simulated work);
- total: Rollout applied -> Rollout Ready=True (polled every 0.2 s);
- controller writes per device: PATCHes of edgedevices/status counted by the API
  server's ``apiserver_request_total`` minus the fleet's own (it counts them), and the
  sum of ``desiredRevision`` as a cross-check;
- operator CPU seconds (utime+stime from /proc) and peak RSS (VmHWM) during the rollout.

    .venv/bin/python bench/rollout.py [--devices 1000 10000] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e import rollout_helpers as h  # noqa: E402

from edgefleet.testing.controlplane import ControlPlane  # noqa: E402
from edgefleet.testing.fakefleet import FakeFleet  # noqa: E402
from edgefleet.testing.procs import Service, wait_until  # noqa: E402
from edgefleet.testing.registry import LocalRegistry  # noqa: E402

SECTION = "## Rollout convergence"
#: The fake fleet's report writers (10k real devices would write independently).
FLEET_WORKERS = 32
_PATCH = re.compile(
    r'^apiserver_request_total\{(?=[^}]*resource="edgedevices")(?=[^}]*subresource="status")'
    r'(?=[^}]*verb="(?:PATCH|APPLY)")[^}]*\} (\S+)$',
    re.M,
)


def _patches(cp: ControlPlane) -> float:
    return sum(float(v) for v in _PATCH.findall(cp.kubectl("get", "--raw", "/metrics").stdout))


def _proc(pid: int) -> tuple[float, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(
        int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmHWM")
    )
    return cpu, hwm


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def run(n: int, cp: ControlPlane, registry: LocalRegistry, work: Path) -> dict[str, float]:
    ns = f"bench-{n}"
    cp.kubectl("create", "namespace", ns)
    api = h.objects(cp)
    h.put_model(api, ns, "2.0.0")
    conf = client.Configuration()
    config.load_kube_config(config_file=str(cp.kubeconfig), client_configuration=conf)
    conf.connection_pool_maxsize = FLEET_WORKERS  # one kept-alive connection per worker
    fleet = FakeFleet(client.ApiClient(conf), ns, workers=FLEET_WORKERS)
    names = [f"dev-{i:05d}" for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda chunk: fleet.create(chunk, {"site": "berlin"}, "linux/amd64"),
                [names[i::8] for i in range(8)],
            )
        )
    env = h.rollout_env(cp, registry)
    op = Service(
        "operator",
        [sys.executable, "-m", "edgefleet.cli", "--json-logs", "operator"],
        work / f"operator-{n}.log",
        env=env,
    )
    try:
        wait_until(
            lambda: "rollout controller started" in op.log_tail(50),
            timeout=300,
            what="operator start-up",
            alive=op.check_alive,
        )
        fleet.start()
        cpu0, _ = _proc(op.process.pid)
        patches0, reports0 = _patches(cp), fleet.reports
        t0 = time.monotonic()
        h.apply_rollout(cp, ns, "bench", maxUnavailable="100%")

        def ready() -> bool:
            obj = h.get(api, ns, "rollouts", "bench")
            return h.cond(obj, "Ready").get("status") == "True"

        wait_until(ready, timeout=1800, interval=0.2, what="rollout Ready", alive=op.check_alive)
        total = time.monotonic() - t0
        cpu1, hwm = _proc(op.process.pid)
        controller_writes = (_patches(cp) - patches0) - (fleet.reports - reports0)
    finally:
        op.stop()
        fleet.stop()
    notified = [min(d.notified_at.values()) - t0 for d in fleet.devices.values()]
    ready_lat = [
        d.ready_at[r] - d.notified_at[r]
        for d in fleet.devices.values()
        for r in d.ready_at
        if r in d.notified_at
    ]
    revisions = sum((d.get("status") or {}).get("desiredRevision", 0) for d in h.devices(api, ns))
    cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return {
        "devices": n,
        "reaction_s": min(notified),
        "notify_p50_s": _pct(notified, 50),
        "notify_p99_s": _pct(notified, 99),
        "ready_p50_s": _pct(ready_lat, 50),
        "ready_p99_s": _pct(ready_lat, 99),
        "total_s": total,
        "writes_per_device": controller_writes / n,
        "revisions_per_device": revisions / n,
        "operator_cpu_s": cpu1 - cpu0,
        "operator_rss_mb": hwm / 2**20,
    }


def table(rows: list[dict[str, float]]) -> str:
    head = (
        "| devices | reaction | apply→notified p50 / p99 | notified→Ready p50 / p99 | total"
        " | controller writes/device (metrics; desiredRevision) | operator CPU | operator"
        " peak RSS |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['devices']:,.0f} | {r['reaction_s']:.2f} s | {r['notify_p50_s']:.1f} /"
        f" {r['notify_p99_s']:.1f} s | {r['ready_p50_s']:.2f} / {r['ready_p99_s']:.2f} s |"
        f" {r['total_s']:.1f} s | {r['writes_per_device']:.2f}; {r['revisions_per_device']:.2f}"
        f" | {r['operator_cpu_s']:.1f} s | {r['operator_rss_mb']:.0f} MB |\n"
        for r in rows
    )
    return head + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, nargs="+", default=[1000])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ControlPlane() as cp, LocalRegistry() as reg:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
        for n in args.devices:
            rows.append(run(n, cp, reg, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    text = table(rows)
    print(text)
    if args.out is not None:
        _write_section(args.out, text, " ".join(str(n) for n in args.devices))
    return 0


def _write_section(path: Path, text: str, devices: str) -> None:
    intro = (
        f"{SECTION}\n\n`.venv/bin/python bench/rollout.py --devices {devices} --out"
        " docs/benchmarks.md` starts its own API server and registry, the operator with only"
        " the rollout controller, and N fake-fleet devices (they stand in for gateway +"
        " agents and report Healthy as soon as they see their desired workload; 32 report"
        " writers). One"
        " Rollout, no pauses, `maxUnavailable: 100%`, `minHealthyDuration: 1s`. Controller"
        " writes are PATCHes of `edgedevices/status` from `apiserver_request_total` minus"
        " the fleet's own reports.\n\n"
    )
    doc = path.read_text()
    start = doc.find(SECTION)
    if start == -1:
        doc = doc.rstrip("\n") + "\n\n" + intro + text
    else:
        end = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + intro + text + (doc[end:] if end != -1 else "")
    path.write_text(doc)


if __name__ == "__main__":
    sys.exit(main())
