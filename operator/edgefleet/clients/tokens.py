"""Bootstrap tokens: created by ``edgefleet token create``, redeemed once at enrolment.

Every outstanding token is one entry of a single Secret, ``edgefleet-bootstrap-tokens``
(type ``edgefleet.io/bootstrap-tokens``) in the gateway namespace: key = the token id,
value = JSON with only the SHA-256 of the token's secret part, the EdgeDevice it is
bound to and its expiry. One Secret with a fixed name, not one per token, so the
gateway's RBAC can name it (``resourceNames``) and the gateway never needs to read
Secrets in general, such as the operator's image signing key.

Every change is a read-modify-replace carrying the ``resourceVersion`` read, so of two
enrolments racing with one token exactly one wins (the other's replace conflicts, and
on re-reading it finds the token gone). :func:`redeem` checks the secret in constant
time. Expired tokens are refused and dropped; :func:`prune` drops them in bulk. A
Secret holds at most 1 MiB: about 4,000 outstanding tokens. The token never reaches a
log.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

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

SECRET_NAME = "edgefleet-bootstrap-tokens"  # noqa: S105 -- a name, not a secret
SECRET_TYPE = "edgefleet.io/bootstrap-tokens"  # noqa: S105 -- a type name, not a secret
DEFAULT_TTL = datetime.timedelta(hours=24)
MAX_TTL = datetime.timedelta(days=30)
_MAX_ATTEMPTS = 20
_T = TypeVar("_T")
_TTL = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


class TokenError(Exception):
    """A token cannot be made or used. ``reason`` is a CamelCase word for the gateway's
    error body; the message is safe to show (it never contains the token)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class TokenInfo:
    """A stored token, without its secret."""

    token_id: str
    namespace: str
    device: str
    expires_at: datetime.datetime

    def expired(self, now: datetime.datetime) -> bool:
        return self.expires_at <= now


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


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else datetime.datetime.now(datetime.UTC)


Records = dict[str, dict[str, str]]


def _decode(secret: client.V1Secret | None) -> Records:
    """The token records of the Secret; malformed entries are skipped (never fatal)."""
    records: Records = {}
    for token_id, raw in ((secret.data or {}) if secret is not None else {}).items():
        try:
            value = json.loads(base64.b64decode(raw))
        except (binascii.Error, ValueError):
            continue
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            records[token_id] = value
    return records


def _info(token_id: str, record: dict[str, str]) -> TokenInfo | None:
    try:
        expires = wire.parse_time(record["expiresAt"], f"token {token_id}")
        return TokenInfo(token_id, record["namespace"], record["device"], expires)
    except (KeyError, wire.ProtocolError):
        return None


def _read(core: client.CoreV1Api, namespace: str) -> client.V1Secret | None:
    try:
        secret: client.V1Secret = core.read_namespaced_secret(SECRET_NAME, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return secret


def _update(
    core: client.CoreV1Api,
    namespace: str,
    change: Callable[[Records], tuple[Records | None, _T]],
) -> _T:
    """Apply ``change`` to the records atomically (compare-and-swap on resourceVersion).

    ``change`` returns the new records (``None``: write nothing) and a result; it may
    raise to abort. Conflicts re-read and re-apply."""
    for _ in range(_MAX_ATTEMPTS):
        secret = _read(core, namespace)
        records, result = change(_decode(secret))
        if records is None:
            return result
        data = {
            k: base64.b64encode(json.dumps(v, sort_keys=True).encode()).decode()
            for k, v in sorted(records.items())
        }
        try:
            if secret is None:
                core.create_namespaced_secret(
                    namespace,
                    client.V1Secret(
                        metadata=client.V1ObjectMeta(
                            name=SECRET_NAME, labels={"app.kubernetes.io/part-of": "edgefleet"}
                        ),
                        type=SECRET_TYPE,
                        data=data,
                    ),
                )
            else:
                secret.data = dict(data)  # the resourceVersion read: a compare-and-swap
                core.replace_namespaced_secret(SECRET_NAME, namespace, secret)
        except ApiException as exc:
            if exc.status == 409:
                continue  # someone else changed it first: read again
            raise
        return result
    raise TokenError("Conflict", "the token store kept changing under us; try again")


def _pruned(records: Records, moment: datetime.datetime) -> Records:
    kept = {}
    for token_id, record in records.items():
        info = _info(token_id, record)
        if info is not None and not info.expired(moment):
            kept[token_id] = record
    return kept


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
    moment = _now(now)
    expires = moment + ttl
    record = {
        "secretHash": token.secret_hash(),
        "namespace": namespace,
        "device": device,
        "expiresAt": wire.format_time(expires),
    }

    def add(records: Records) -> tuple[Records, None]:
        return {**_pruned(records, _now(None)), token.token_id: record}, None

    _update(client.CoreV1Api(api), gateway_namespace, add)
    log.info("bootstrap token created", namespace=namespace, name=device,
             token_id=token.token_id, expires_at=wire.format_time(expires))  # fmt: skip
    return token


def list_tokens(core: client.CoreV1Api, gateway_namespace: str) -> list[TokenInfo]:
    """Every stored token (no secrets), soonest expiry first."""
    records = _decode(_read(core, gateway_namespace))
    infos = [i for i in (_info(k, v) for k, v in records.items()) if i is not None]
    return sorted(infos, key=lambda i: (i.expires_at, i.token_id))


def prune(
    core: client.CoreV1Api, gateway_namespace: str, *, now: datetime.datetime | None = None
) -> int:
    """Drop expired tokens; how many were dropped."""

    def drop(records: Records) -> tuple[Records | None, int]:
        kept = _pruned(records, _now(now))
        gone = len(records) - len(kept)
        return (kept if gone else None), gone

    return _update(core, gateway_namespace, drop)


_INVALID = "the bootstrap token is unknown, already used, or not for this device"


def _verify(records: Records, token: BootstrapToken) -> TokenInfo:
    """The stored record of ``token`` if its secret and device match (expired or not)."""
    record = records.get(token.token_id)
    info = None if record is None else _info(token.token_id, record)
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
    info = _verify(_decode(_read(core, gateway_namespace)), token)
    if info.expired(_now(now)):
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
        return rest, (info, info.expired(_now(now)))  # an expired one is dropped too

    info, expired = _update(core, gateway_namespace, use)
    if expired:
        raise _expired(info)
    log.info("bootstrap token used", namespace=info.namespace, name=info.device,
             token_id=info.token_id)  # fmt: skip
    return info
