"""``edgefleet gateway`` (run a gateway replica) and ``edgefleet device revoke``.

The gateway is configured by ``EDGEFLEET_*`` variables (:mod:`edgefleet.gateway.config`,
table in ``docs/gateway.md``); a bad setting or malformed PKI material exits with code 2.
"""

from __future__ import annotations

import argparse
import asyncio

import structlog

__all__ = ["register"]

log = structlog.get_logger("edgefleet.cli")


def _gateway(_args: argparse.Namespace) -> int:
    from edgefleet.domain.pki import PkiError
    from edgefleet.gateway import config, server

    try:
        cfg = config.GatewayConfig.from_env()
    except config.ConfigError as exc:
        log.error("invalid configuration", error=str(exc))
        return 2
    try:
        server.run(cfg)
    except PkiError as exc:
        log.error("unusable PKI material", error=str(exc))
        return 2
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from edgefleet.clients.devices import DeviceError, revoke
    from edgefleet.clients.kube import KubeClient, KubeError

    async def go() -> str:
        kube = KubeClient.from_environment(args.kubeconfig)
        try:
            return await revoke(kube, args.namespace, args.name)
        finally:
            await kube.aclose()

    try:
        serial = asyncio.run(go())
    except (DeviceError, KubeError) as exc:
        log.error("revoke failed", namespace=args.namespace, name=args.name, error=str(exc))
        return 1
    log.info("device revoked", namespace=args.namespace, name=args.name, serial=serial)
    print(f"edgedevice {args.namespace}/{args.name} revoked (certificate {serial})")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gw = sub.add_parser("gateway", help="run the device gateway (configured by EDGEFLEET_*)")
    gw.set_defaults(func=_gateway)
    device = sub.add_parser("device", help="operations on EdgeDevices")
    device_sub = device.add_subparsers(dest="device_command", required=True)
    rev = device_sub.add_parser(
        "revoke", help="refuse the device's certificate now; it needs a new token to return"
    )
    rev.add_argument("name", help="EdgeDevice name")
    rev.add_argument("-n", "--namespace", default="default", help="EdgeDevice namespace")
    rev.add_argument("--kubeconfig", default=None, help="kubeconfig (default: $KUBECONFIG)")
    rev.set_defaults(func=_revoke)
