"""``edgefleet token …`` and ``edgefleet pki …``: enrolment tokens and key rotation.

``edgefleet token create DEVICE [-n NS] [--ttl 24h]`` prints exactly one line, the
token (logs go to stderr); ``edgefleet token list`` shows stored tokens without their
secrets; ``edgefleet pki rotate TARGET [--finish]`` takes one rotation step
(``docs/rotation.md``). They talk to the cluster of the current kubeconfig
(``--kubeconfig``, ``$KUBECONFIG``, or in-cluster). Exit codes: 0 done, 1 refused,
2 malformed input or PKI material.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

import structlog
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from edgefleet.clients import pki, pki_rotation, tokens
from edgefleet.domain.pki import PkiError
from edgefleet_node.protocol import wire

__all__ = ["register"]

log = structlog.get_logger("edgefleet.cli")
_DEFAULT_GATEWAY_NAMESPACE = "edgefleet-system"


def _api(args: argparse.Namespace) -> client.ApiClient:
    if (
        args.kubeconfig
        or os.environ.get("KUBECONFIG")
        or not os.environ.get("KUBERNETES_SERVICE_HOST")
    ):
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig
        )
        return api
    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def _fail(message: str, code: int) -> int:
    print(f"edgefleet: {message}", file=sys.stderr)
    return code


def _token_create(args: argparse.Namespace) -> int:
    try:
        ttl = tokens.parse_ttl(args.ttl)
        wire.check_name(args.device, "device name")
        wire.check_name(args.namespace, "namespace")
    except ValueError as exc:
        return _fail(str(exc), 2)
    with _api(args) as api:
        try:
            pin = pki.gateway_pin(api, args.gateway_namespace)
            token = tokens.create_token(
                api,
                gateway_namespace=args.gateway_namespace,
                namespace=args.namespace,
                device=args.device,
                ca_hash=pin,
                ttl=ttl,
            )
        except tokens.TokenError as exc:
            return _fail(str(exc), 1)
        except PkiError as exc:
            return _fail(str(exc), 2)
        except ApiException as exc:
            return _fail(f"the API server refused: {exc.status} {exc.reason}", 1)
    print(token)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    now = datetime.datetime.now(datetime.UTC)
    with _api(args) as api:
        try:
            infos = tokens.list_tokens(client.CoreV1Api(api), args.gateway_namespace)
        except ApiException as exc:
            return _fail(f"the API server refused: {exc.status} {exc.reason}", 1)
    print(f"{'ID':<18}{'DEVICE':<50}{'EXPIRES':<22}STATE")
    for info in infos:
        state = "expired" if info.expired(now) else "valid"
        device = f"{info.namespace}/{info.device}"
        print(f"{info.token_id:<18}{device:<50}{wire.format_time(info.expires_at):<22}{state}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    try:
        overlap = tokens.parse_ttl(args.min_overlap) if args.min_overlap else None
    except ValueError as exc:
        return _fail(str(exc).replace("TTL", "overlap"), 2)
    with _api(args) as api:
        try:
            message = pki_rotation.rotate(
                api,
                args.gateway_namespace,
                args.target,
                finish=args.finish,
                force=args.force,
                min_overlap=overlap,
            )
        except pki_rotation.RotationError as exc:
            return _fail(str(exc), 1)
        except PkiError as exc:
            return _fail(str(exc), 2)
        except ApiException as exc:
            return _fail(f"the API server refused: {exc.status} {exc.reason}", 1)
    print(message)
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument(
        "--gateway-namespace",
        default=os.environ.get("EDGEFLEET_NAMESPACE", _DEFAULT_GATEWAY_NAMESPACE),
        help="namespace of the gateway and its Secrets (default: $EDGEFLEET_NAMESPACE "
        f"or {_DEFAULT_GATEWAY_NAMESPACE})",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``token`` and ``pki`` commands to the ``edgefleet`` parser."""
    token = sub.add_parser("token", help="bootstrap tokens that enrol devices")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="print a one-time enrolment token for DEVICE")
    create.add_argument("device", help="name of the EdgeDevice the token enrols")
    create.add_argument("-n", "--namespace", default="default", help="the EdgeDevice's namespace")
    create.add_argument("--ttl", default="24h", help="lifetime, e.g. 30m, 24h, 7d (default 24h)")
    _common(create)
    create.set_defaults(func=_token_create)
    listing = token_sub.add_parser("list", help="list unused tokens (never their secrets)")
    _common(listing)
    listing.set_defaults(func=_token_list)

    keys = sub.add_parser("pki", help="the gateway's CAs and signing keys")
    keys_sub = keys.add_subparsers(dest="pki_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="one step of a two-phase overlap rotation")
    rotate.add_argument("target", choices=pki_rotation.TARGETS)
    rotate.add_argument(
        "--finish", action="store_true", help="end the overlap: drop the old CA or key"
    )
    rotate.add_argument(
        "--force", action="store_true", help="finish before the minimum overlap has passed"
    )
    rotate.add_argument(
        "--min-overlap",
        help="how long the overlap must last before --finish (default: 7d for device-ca, "
        "1d otherwise)",
    )
    _common(rotate)
    rotate.set_defaults(func=_rotate)
