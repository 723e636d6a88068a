"""The ``edgefleet`` command: the local demo, and tools for people who run edgefleet.

``edgefleet demo`` runs the system locally (see :mod:`edgefleet.demo`);
``edgefleet operator`` runs the operator, configured by ``EDGEFLEET_*`` variables
(see :mod:`edgefleet.handlers.operator`).
"""

from __future__ import annotations

import argparse
import sys

import structlog

from edgefleet import logs

__all__ = ["main"]

log = structlog.get_logger("edgefleet.cli")


def _demo(args: argparse.Namespace) -> int:
    from edgefleet.demo import run_demo

    return run_demo(keep=args.keep, builds=args.builds)


def _operator(_args: argparse.Namespace) -> int:
    from edgefleet.handlers import operator

    try:
        cfg = operator.OperatorConfig.from_env()
    except operator.ConfigError as exc:
        log.error("invalid configuration", error=str(exc))
        return 2
    return operator.run(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgefleet", description=__doc__)
    parser.add_argument(
        "--json-logs", action="store_true", default=None, help="log JSON lines even on a terminal"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="run the system locally: devices in containers, a canary, a rollback"
    )
    demo.add_argument(
        "--keep",
        action=argparse.BooleanOptionalAction,
        default=sys.stdin.isatty(),
        help="keep running until Ctrl-C (default: when on a terminal)",
    )
    demo.add_argument(
        "--builds",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the registry, operator, gateway and devices (--no-builds: the"
        " control plane with the example fleet only)",
    )
    demo.set_defaults(func=_demo)
    op = sub.add_parser("operator", help="run the operator (configured by EDGEFLEET_* variables)")
    op.set_defaults(func=_operator)
    from edgefleet import cli_admin  # token, pki

    cli_admin.register(sub)
    from edgefleet import cli_images  # image build-node

    cli_images.register(sub)
    from edgefleet import cli_gateway  # gateway, device revoke

    cli_gateway.register(sub)
    args = parser.parse_args(argv)
    logs.configure(json=args.json_logs)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
