"""Benchmark of the inference server on this host: cold start and predict latency.

Builds the ~20 MB test MLP, starts ``python -m edgefleet.serving`` as a child process
on 127.0.0.1 (host numpy/onnxruntime, or with ``--runtime-root`` the unpacked runtime
layer under ``python -S``), measures the time from process start to ``/healthz`` 200,
then sends ``--requests`` sequential predict requests and prints a table of
client-side and server-side (``InferenceSession.run``) latencies.

    .venv/bin/python bench/serving.py --model-mb 20 --requests 200
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from edgefleet.testing.models import make_mlp
from edgefleet.testing.procs import Service, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the bench package beside it

from bench import measure  # noqa: E402


def _call(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-mb", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="EDGEFLEET_THREADS (0 = all cores)")
    parser.add_argument("--runtime-root", type=Path, help="serve from an unpacked runtime layer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        work = Path(tmp)
        fixture = make_mlp(work / "model.onnx", target_bytes=int(args.model_mb * 1e6), seed=1)
        port = free_port()
        env = {
            **os.environ,
            "EDGEFLEET_MODEL_PATH": str(fixture.path),
            "EDGEFLEET_MODEL_SHA256": fixture.sha256,
            "EDGEFLEET_PORT": str(port),
            "EDGEFLEET_BIND": "127.0.0.1",
            "EDGEFLEET_THREADS": str(args.threads),
        }
        argv = [sys.executable, "-m", "edgefleet.serving"]
        if args.runtime_root is not None:
            root = args.runtime_root.resolve()
            env["PYTHONPATH"] = f"{root}/opt/edgefleet/app:{root}/opt/edgefleet/site-packages"
            argv.insert(1, "-S")
        started = time.monotonic()
        service = Service("serving", argv, work / "serving.log", env=env)
        try:
            wait_until(
                lambda: _call(port, "GET", "/healthz")[0] == 200,
                timeout=120,
                what="/healthz 200",
                alive=service.check_alive,
                interval=0.01,
            )
            cold_start = time.monotonic() - started
            body = json.dumps(fixture.probe_request()).encode()
            latencies = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                code, data = _call(port, "POST", "/v1/predict", body)
                latencies.append(time.perf_counter() - t0)
                if code != 200 or not fixture.matches(json.loads(data)["outputs"]):
                    raise SystemExit(f"bad answer {code}: {data[:200]!r}")
            metrics = _call(port, "GET", "/metrics")[1].decode()
        finally:
            service.stop()
        log = [json.loads(line) for line in service.log_path.read_text().splitlines()]
    ready = next(r for r in log if r["event"] == "model_ready")
    total = next(float(x.split()[-1]) for x in metrics.splitlines() if "duration_seconds_sum" in x)
    ms = [v * 1000 for v in latencies]
    print(f"| model | {fixture.size / 1e6:.1f} MB, runtime {ready['runtime']} |")
    print("| --- | --- |")
    print(f"| cold start (spawn to /healthz 200) | {cold_start:.3f} s |")
    print(f"| model load + warm-up (server) | {ready['load_seconds']:.3f} s |")
    p95 = measure.percentile_nearest(ms, 0.95)
    print(f"| predict p50 / p95 / max (client, {args.requests} sequential) "
          f"| {statistics.median(ms):.2f} / {p95:.2f} / {max(ms):.2f} ms |")  # fmt: skip
    print(f"| inference mean (server, session.run) | {total / args.requests * 1000:.2f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
