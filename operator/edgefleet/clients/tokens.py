"""Bootstrap tokens: created by ``edgefleet token create``, redeemed once at enrolment.

A token is stored as a Secret ``edgefleet-token-<id>`` of type
``edgefleet.io/bootstrap-token`` in the gateway namespace holding only the SHA-256 of
its secret part, the EdgeDevice it is bound to and its expiry. :func:`redeem` checks the
secret in constant time and deletes the Secret with a ``uid`` precondition: of two
enrolments racing with one token exactly one wins (the API server deletes an object
once). Expired tokens are refused and deleted, and :func:`prune` removes them in bulk.
The printed token never reaches a log.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import re
from dataclasses import dataclass

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from edgefleet_node.protocol import wire
from edgefleet_node.protocol.enroll import BootstrapToken

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "SECRET_TYPE",
    "TokenError",
    "TokenInfo",
    "create_token",
    "list_tokens",
    "parse_ttl",
    "prune",
    "redeem",
]

log = structlog.get_logger("edgefleet.tokens")

SECRET_TYPE = "edgefleet.io/bootstrap-token"  # noqa: S105 -- a type name, not a secret
DEFAULT_TTL = datetime.timedelta(hours=24)
MAX_TTL = datetime.timedelta(days=30)
_PREFIX = "edgefleet-token-"
_LABEL = "edgefleet.io/bootstrap-token"
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


def _info(secret: client.V1Secret) -> TokenInfo | None:
    meta = secret.metadata or client.V1ObjectMeta()
    name = meta.name or ""
    if secret.type != SECRET_TYPE or not name.startswith(_PREFIX):
        return None
    data = secret.data or {}
    try:
        fields = {k: base64.b64decode(data[k]).decode() for k in ("namespace", "device")}
        expires = wire.parse_time(base64.b64decode(data["expiresAt"]).decode(), name)
    except (KeyError, binascii.Error, UnicodeDecodeError, wire.ProtocolError):
        return None
    return TokenInfo(name[len(_PREFIX) :], fields["namespace"], fields["device"], expires)


def _delete(core: client.CoreV1Api, namespace: str, name: str, uid: str | None) -> bool:
    """Delete with a uid precondition; ``True`` when this call deleted it."""
    try:
        core.delete_namespaced_secret(
            name,
            namespace,
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)),
        )
    except ApiException as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


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
    only its hash is stored. Refused when the EdgeDevice does not exist."""
    wire.check_name(namespace, "namespace")
    wire.check_name(device, "device name")
    if not _device_exists(client.CustomObjectsApi(api), namespace, device):
        raise TokenError(
            "DeviceNotFound",
            f"EdgeDevice {namespace}/{device} does not exist: create it first "
            "(kubectl apply -f edgedevice.yaml)",
        )
    core = client.CoreV1Api(api)
    prune(core, gateway_namespace, now=now)
    token = BootstrapToken.generate(namespace, device, ca_hash)
    expires = _now(now) + ttl
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=_PREFIX + token.token_id,
            labels={_LABEL: "true", "app.kubernetes.io/part-of": "edgefleet"},
            annotations={"edgefleet.io/device": f"{namespace}/{device}"},
        ),
        type=SECRET_TYPE,
        string_data={
            "secretHash": token.secret_hash(),
            "namespace": namespace,
            "device": device,
            "expiresAt": wire.format_time(expires),
        },
    )
    core.create_namespaced_secret(gateway_namespace, body)
    log.info("bootstrap token created", namespace=namespace, name=device,
             token_id=token.token_id, expires_at=wire.format_time(expires))  # fmt: skip
    return token


def list_tokens(core: client.CoreV1Api, gateway_namespace: str) -> list[TokenInfo]:
    """Every stored token (no secrets), soonest expiry first."""
    items = core.list_namespaced_secret(gateway_namespace, label_selector=f"{_LABEL}=true").items
    infos = [i for i in (_info(s) for s in items) if i is not None]
    return sorted(infos, key=lambda i: (i.expires_at, i.token_id))


def prune(
    core: client.CoreV1Api, gateway_namespace: str, *, now: datetime.datetime | None = None
) -> int:
    """Delete expired tokens; how many were deleted."""
    moment, deleted = _now(now), 0
    items = core.list_namespaced_secret(gateway_namespace, label_selector=f"{_LABEL}=true").items
    for secret in items:
        info = _info(secret)
        if info is not None and info.expired(moment):
            meta = secret.metadata or client.V1ObjectMeta()
            deleted += _delete(core, gateway_namespace, meta.name or "", meta.uid)
    return deleted


def redeem(
    core: client.CoreV1Api,
    gateway_namespace: str,
    token: BootstrapToken,
    *,
    now: datetime.datetime | None = None,
) -> TokenInfo:
    """Use ``token`` up (delete its Secret) if it is valid; else raise :class:`TokenError`.

    Call it only after the rest of the enrolment request checked out (a malformed CSR
    should not burn the token). Unknown, used, wrong and expired tokens all answer
    ``TokenInvalid`` with the same message, except an expired one (``TokenExpired``),
    which is also deleted.
    """
    invalid = TokenError(
        "TokenInvalid", "the bootstrap token is unknown, already used, or not for this device"
    )
    name = _PREFIX + token.token_id
    try:
        secret = core.read_namespaced_secret(name, gateway_namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise invalid from None
        raise
    info = _info(secret)
    stored_hash = base64.b64decode((secret.data or {}).get("secretHash", "")).decode(
        "ascii", "replace"
    )
    if info is None or not hmac.compare_digest(stored_hash, token.secret_hash()):
        raise invalid
    if (info.namespace, info.device) != (token.namespace, token.device):
        raise invalid
    meta = secret.metadata or client.V1ObjectMeta()
    if info.expired(_now(now)):
        _delete(core, gateway_namespace, name, meta.uid)
        raise TokenError(
            "TokenExpired",
            f"the bootstrap token expired at {wire.format_time(info.expires_at)}: make a new "
            "one with `edgefleet token create`",
        )
    if not _delete(core, gateway_namespace, name, meta.uid):
        raise invalid
    log.info("bootstrap token used", namespace=info.namespace, name=info.device,
             token_id=info.token_id)  # fmt: skip
    return info
