"""Bootstrap tokens: created by ``edgefleet token create``, redeemed once at enrolment.

Tokens are kept in one Secret (:mod:`edgefleet.clients.tokens_store`, which also
defines :class:`TokenError`, :class:`TokenInfo` and the Secret's name and type,
re-exported here). :func:`redeem` checks the secret in constant time. Expired tokens are
refused and dropped; :func:`prune` drops them in bulk. The token never reaches a log.
"""

from __future__ import annotations

import datetime
import hmac
import re

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from edgefleet.clients.tokens_store import (
    SECRET_NAME,
    SECRET_TYPE,
    Records,
    TokenError,
    TokenInfo,
    decode,
    now_or,
    pruned,
    read,
    record_info,
    update,
)
from edgefleet_node.protocol import wire
from edgefleet_node.protocol.enroll import BootstrapToken

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "SECRET_NAME",
    "SECRET_TYPE",
    "TokenError",
    "TokenInfo",
    "check",
    "create_token",
    "list_tokens",
    "parse_ttl",
    "prune",
    "redeem",
]

log = structlog.get_logger("edgefleet.tokens")

DEFAULT_TTL = datetime.timedelta(hours=24)
MAX_TTL = datetime.timedelta(days=30)
_TTL = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_ttl(text: str) -> datetime.timedelta:
    """``90m``, ``24h``, ``7d``, ``1d12h`` …; between one minute and :data:`MAX_TTL`."""
    match = _TTL.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"TTL {text!r} is not a duration such as 30m, 24h or 7d")
    d, h, m, s = (int(g or 0) for g in match.groups())
    ttl = datetime.timedelta(days=d, hours=h, minutes=m, seconds=s)
    if not datetime.timedelta(minutes=1) <= ttl <= MAX_TTL:
        raise ValueError(f"TTL {text!r} must be between 1m and {MAX_TTL.days}d")
    return ttl


def _device_exists(objects: client.CustomObjectsApi, namespace: str, device: str) -> bool:
    try:
        objects.get_namespaced_custom_object(
            "edgefleet.io", "v1alpha1", namespace, "edgedevices", device
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def create_token(
    api: client.ApiClient,
    *,
    gateway_namespace: str,
    namespace: str,
    device: str,
    ca_hash: str,
    ttl: datetime.timedelta = DEFAULT_TTL,
    now: datetime.datetime | None = None,
) -> BootstrapToken:
    """A new token for EdgeDevice ``namespace/device`` pinning the gateway CA ``ca_hash``;
    only its hash is stored. Refused when the EdgeDevice does not exist. Expired tokens
    are dropped in the same write."""
    wire.check_name(namespace, "namespace")
    wire.check_name(device, "device name")
    if not _device_exists(client.CustomObjectsApi(api), namespace, device):
        raise TokenError(
            "DeviceNotFound",
            f"EdgeDevice {namespace}/{device} does not exist: create it first "
            "(kubectl apply -f edgedevice.yaml)",
        )
    token = BootstrapToken.generate(namespace, device, ca_hash)
    moment = now_or(now)
    expires = moment + ttl
    record = {
        "secretHash": token.secret_hash(),
        "namespace": namespace,
        "device": device,
        "expiresAt": wire.format_time(expires),
    }

    def add(records: Records) -> tuple[Records, None]:
        return {**pruned(records, now_or(None)), token.token_id: record}, None

    update(client.CoreV1Api(api), gateway_namespace, add)
    log.info("bootstrap token created", namespace=namespace, name=device,
             token_id=token.token_id, expires_at=wire.format_time(expires))  # fmt: skip
    return token


def list_tokens(core: client.CoreV1Api, gateway_namespace: str) -> list[TokenInfo]:
    """Every stored token (no secrets), soonest expiry first."""
    records = decode(read(core, gateway_namespace))
    infos = [i for i in (record_info(k, v) for k, v in records.items()) if i is not None]
    return sorted(infos, key=lambda i: (i.expires_at, i.token_id))


def prune(
    core: client.CoreV1Api, gateway_namespace: str, *, now: datetime.datetime | None = None
) -> int:
    """Drop expired tokens; how many were dropped."""

    def drop(records: Records) -> tuple[Records | None, int]:
        kept = pruned(records, now_or(now))
        gone = len(records) - len(kept)
        return (kept if gone else None), gone

    return update(core, gateway_namespace, drop)


_INVALID = "the bootstrap token is unknown, already used, or not for this device"


def _verify(records: Records, token: BootstrapToken) -> TokenInfo:
    """The stored record of ``token`` if its secret and device match (expired or not)."""
    record = records.get(token.token_id)
    info = None if record is None else record_info(token.token_id, record)
    if record is None or info is None:
        raise TokenError("TokenInvalid", _INVALID)
    if not hmac.compare_digest(record.get("secretHash", ""), token.secret_hash()):
        raise TokenError("TokenInvalid", _INVALID)
    if (info.namespace, info.device) != (token.namespace, token.device):
        raise TokenError("TokenInvalid", _INVALID)
    return info


def _expired(info: TokenInfo) -> TokenError:
    return TokenError(
        "TokenExpired",
        f"the bootstrap token expired at {wire.format_time(info.expires_at)}: make "
        "a new one with `edgefleet token create`",
    )


def check(
    core: client.CoreV1Api,
    gateway_namespace: str,
    token: BootstrapToken,
    *,
    now: datetime.datetime | None = None,
) -> TokenInfo:
    """Whether ``token`` could be redeemed now, without using it up (nothing is written);
    raises :class:`TokenError` as :func:`redeem` does. The gateway checks the token
    before it judges the rest of an enrolment (a refusal it writes to the EdgeDevice
    needs a valid token), and redeems it only once everything checked out."""
    info = _verify(decode(read(core, gateway_namespace)), token)
    if info.expired(now_or(now)):
        raise _expired(info)
    return info


def redeem(
    core: client.CoreV1Api,
    gateway_namespace: str,
    token: BootstrapToken,
    *,
    now: datetime.datetime | None = None,
) -> TokenInfo:
    """Use ``token`` up (drop its record) if it is valid; else raise :class:`TokenError`.

    Call it only after the rest of the enrolment request checked out (a malformed CSR
    or a platform mismatch should not burn the token). Unknown, used, wrong and expired
    tokens all answer ``TokenInvalid`` with the same message, except an expired one
    (``TokenExpired``), which is also dropped.
    """

    def use(records: Records) -> tuple[Records | None, tuple[TokenInfo, bool]]:
        info = _verify(records, token)
        rest = {k: v for k, v in records.items() if k != token.token_id}
        return rest, (info, info.expired(now_or(now)))  # an expired one is dropped too

    info, expired = update(core, gateway_namespace, use)
    if expired:
        raise _expired(info)
    log.info("bootstrap token used", namespace=info.namespace, name=info.device,
             token_id=info.token_id)  # fmt: skip
    return info
