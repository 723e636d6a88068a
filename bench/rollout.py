"""Benchmark of rollout convergence: the real API server, the operator process (rollout
controller only), and N fake-fleet devices (edgefleet.testing.fakefleet, standing in
for the gateway and agents: they report Healthy as soon as they see their desired
workload). The fleet runs in its own processes (edgefleet.testing.fleetshard, each
watching only its shard of the devices), so what is measured is the controller and the
API server, not the bench's own GIL.

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
- operator CPU seconds (utime+stime from /proc) and peak RSS (VmHWM) during the rollout;
- **baseline, same run, operator stopped**: a minimal client (the bench, 32 threads,
  responses not parsed) server-side applies a new ``status.desired`` to the same N
  devices while the same fleet reports on each: the time until every write is answered,
  and until every device's report is in. That is what the API server on this machine
  allows for the same writes and reports, with no controller in the way;
- the 1-minute load average at the start and at the end.

    .venv/bin/python bench/rollout.py [--devices 1000 10000] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import measure  # noqa: E402
from bench.rollout_fleet import Fleet, baseline  # noqa: E402
from bench.rollout_table import table, write_section  # noqa: E402
from tests.e2e import rollout_helpers as h  # noqa: E402

from edgefleet.testing.controlplane import ControlPlane  # noqa: E402
from edgefleet.testing.procs import Service, wait_until  # noqa: E402
from edgefleet.testing.registry import LocalRegistry  # noqa: E402


def _patches(cp: ControlPlane) -> float:
    """PATCHes (and applies) of edgedevices/status the API server has answered."""
    metrics = measure.apiserver_metrics(cp)
    return measure.request_total(metrics, "edgedevices", ("PATCH", "APPLY"), "status")


def run(
    n: int,
    cp: ControlPlane,
    registry: LocalRegistry,
    work: Path,
    profile: Path | None = None,
    logs: Path | None = None,
) -> dict[str, float]:
    ns = f"bench-{n}"
    load0 = os.getloadavg()[0]
    cp.kubectl("create", "namespace", ns)
    api = h.objects(cp)
    h.put_model(api, ns, "2.0.0")
    fleet = Fleet(cp, ns, n, work)
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
        spy = None
        if profile is not None:  # py-spy (not a dependency: give its path in PY_SPY)
            out = profile / f"operator-{n}.txt"
            argv = [os.environ.get("PY_SPY", "py-spy"), "record", "--rate", "50",
                    "--pid", str(op.process.pid), "--format", "raw", "--output", str(out),
                    "--nonblocking"]  # fmt: skip
            spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = measure.cpu_seconds(op.process.pid)
        patches0, reports0 = _patches(cp), fleet.reports()
        t0 = time.monotonic()
        h.apply_rollout(cp, ns, "bench", maxUnavailable="100%")

        def ready() -> bool:
            obj = h.get(api, ns, "rollouts", "bench")
            return h.cond(obj, "Ready").get("status") == "True"

        wait_until(ready, timeout=1800, interval=0.2, what="rollout Ready", alive=op.check_alive)
        total = time.monotonic() - t0
        cpu1 = measure.cpu_seconds(op.process.pid)
        hwm = measure.memory_bytes(op.process.pid, "VmHWM")
        controller_writes = (_patches(cp) - patches0) - (fleet.reports() - reports0)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        op.stop()
        for keep in {profile, logs} - {None}:
            shutil.copy(work / f"operator-{n}.log", Path(str(keep)) / f"operator-{n}.log")
        revisions = sum(
            (d.get("status") or {}).get("desiredRevision", 0) for d in h.devices(api, ns)
        )
        b_start, b_written, b_done = baseline(cp, ns, n, fleet)
        devices = fleet.stop()
    finally:
        op.stop()
        fleet.close()
    notified = [d["notified"]["1"] - t0 for d in devices.values() if "1" in d["notified"]]
    ready_lat = [
        d["ready"]["1"] - d["notified"]["1"]
        for d in devices.values()
        if "1" in d["ready"] and "1" in d["notified"]
    ]
    b_ready = [d["ready"]["2"] - b_start for d in devices.values() if "2" in d["ready"]]
    cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return {
        "devices": n,
        "reaction_s": min(notified),
        "notify_p50_s": measure.percentile_exclusive(notified, 50),
        "notify_p99_s": measure.percentile_exclusive(notified, 99),
        "ready_p50_s": measure.percentile_exclusive(ready_lat, 50),
        "ready_p99_s": measure.percentile_exclusive(ready_lat, 99),
        "total_s": total,
        "writes_per_device": controller_writes / n,
        "revisions_per_device": revisions / n,
        "operator_cpu_s": cpu1 - cpu0,
        "operator_rss_mb": hwm / 2**20,
        "baseline_writes_s": b_written - b_start,
        "baseline_total_s": max(b_ready) if len(b_ready) == n else b_done - b_start,
        "load_start": load0,
        "load_end": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, nargs="+", default=[1000])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the operator; keep its log here"
    )
    parser.add_argument("--logs", type=Path, default=None, help="keep the operator's log here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ControlPlane() as cp, LocalRegistry() as reg:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
        for n in args.devices:
            rows.append(run(n, cp, reg, Path(tmp), args.profile, args.logs))
            print(json.dumps(rows[-1]), flush=True)
    text = table(rows)
    print(text)
    if args.out is not None:
        write_section(args.out, text, " ".join(str(n) for n in args.devices))
    return 0


if __name__ == "__main__":
    sys.exit(main())
