"""The ``edgefleet`` command: the local demo, and tools for people who run edgefleet.

``edgefleet demo`` starts a real local control plane (etcd, kube-apiserver,
kube-controller-manager at the pinned versions), installs the CRDs, applies the
example fleet and shows ``kubectl get edgefleet -A``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from pathlib import Path

import structlog

from edgefleet import logs
from edgefleet.testing.controlplane import ControlPlane

__all__ = ["main"]

log = structlog.get_logger("edgefleet.cli")


def _repo_path(*parts: str) -> Path:
    for parent in Path(__file__).resolve().parents:
        candidate = parent.joinpath(*parts)
        if candidate.exists():
            return candidate
    raise SystemExit(f"cannot find {'/'.join(parts)}: run the demo from an edgefleet checkout")


def _demo(args: argparse.Namespace) -> int:
    crds, examples = _repo_path("crds"), _repo_path("manifests", "examples")
    started = time.monotonic()
    log.info("starting control plane", components="etcd, kube-apiserver, kube-controller-manager")
    with ControlPlane(keep_dir=args.keep) as cp:
        log.info("control plane ready", url=cp.url, seconds=round(time.monotonic() - started, 1))
        cp.kubectl("apply", "--server-side", "-f", str(crds))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))
        log.info("CRDs established", directory=str(crds))
        applied = cp.kubectl("apply", "-f", str(examples))
        for line in applied.stdout.splitlines():
            log.info("applied", object=line)
        print("\n$ kubectl get edgefleet -A", flush=True)
        print(cp.kubectl("get", "edgefleet", "-A").stdout, flush=True)
        if args.keep:
            print(
                f"Control plane running. Try:\n  export KUBECONFIG={cp.kubeconfig}\n"
                f"  {cp.tools.kubectl} get edgefleet -A\nPress Ctrl-C to stop.",
                flush=True,
            )
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
        log.info("stopping control plane")
    return 0


def _operator(_args: argparse.Namespace) -> int:
    from edgefleet.handlers import operator

    try:
        cfg = operator.OperatorConfig.from_env()
    except operator.ConfigError as exc:
        log.error("invalid configuration", error=str(exc))
        return 2
    operator.run(cfg)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgefleet", description=__doc__)
    parser.add_argument(
        "--json-logs", action="store_true", default=None, help="log JSON lines even on a terminal"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the local control plane with the example fleet")
    demo.add_argument(
        "--keep",
        action=argparse.BooleanOptionalAction,
        default=sys.stdin.isatty(),
        help="keep running until Ctrl-C (default: when on a terminal)",
    )
    demo.set_defaults(func=_demo)
    op = sub.add_parser("operator", help="run the operator (configured by EDGEFLEET_* variables)")
    op.set_defaults(func=_operator)
    args = parser.parse_args(argv)
    logs.configure(json=args.json_logs)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
