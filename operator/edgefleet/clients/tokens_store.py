"""Where bootstrap tokens are kept: one Secret, changed only by compare-and-swap.

Every outstanding token is one entry of a single Secret, ``edgefleet-bootstrap-tokens``
(type ``edgefleet.io/bootstrap-tokens``) in the gateway namespace: key = the token id,
value = JSON with only the SHA-256 of the token's secret part, the EdgeDevice it is
bound to and its expiry. One Secret with a fixed name, not one per token, so the
gateway's RBAC can name it (``resourceNames``) and the gateway never needs to read
Secrets in general, such as the operator's image signing key.

Every change is a read-modify-replace carrying the ``resourceVersion`` read
(:func:`update`), so of two enrolments racing with one token exactly one wins (the
other's replace conflicts, and on re-reading it finds the token gone). A Secret holds
at most 1 MiB: about 4,000 outstanding tokens. The token operations on top of this
store are :mod:`edgefleet.clients.tokens`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from edgefleet_node.protocol import wire

__all__ = [
    "SECRET_NAME",
    "SECRET_TYPE",
    "Records",
    "TokenError",
    "TokenInfo",
    "decode",
    "now_or",
    "pruned",
    "read",
    "record_info",
    "update",
]

SECRET_NAME = "edgefleet-bootstrap-tokens"  # noqa: S105 -- a name, not a secret
SECRET_TYPE = "edgefleet.io/bootstrap-tokens"  # noqa: S105 -- a type name, not a secret
_MAX_ATTEMPTS = 20
_T = TypeVar("_T")


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


def now_or(now: datetime.datetime | None) -> datetime.datetime:
    """``now``, or the current time (UTC) when it is ``None``."""
    return now if now is not None else datetime.datetime.now(datetime.UTC)


Records = dict[str, dict[str, str]]


def decode(secret: client.V1Secret | None) -> Records:
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


def record_info(token_id: str, record: dict[str, str]) -> TokenInfo | None:
    """The stored token ``token_id`` as a :class:`TokenInfo`; ``None`` if malformed."""
    try:
        expires = wire.parse_time(record["expiresAt"], f"token {token_id}")
        return TokenInfo(token_id, record["namespace"], record["device"], expires)
    except (KeyError, wire.ProtocolError):
        return None


def read(core: client.CoreV1Api, namespace: str) -> client.V1Secret | None:
    """The token Secret of ``namespace``; ``None`` when there is none yet."""
    try:
        secret: client.V1Secret = core.read_namespaced_secret(SECRET_NAME, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return secret


def update(
    core: client.CoreV1Api,
    namespace: str,
    change: Callable[[Records], tuple[Records | None, _T]],
) -> _T:
    """Apply ``change`` to the records atomically (compare-and-swap on resourceVersion).

    ``change`` returns the new records (``None``: write nothing) and a result; it may
    raise to abort. Conflicts re-read and re-apply."""
    for _ in range(_MAX_ATTEMPTS):
        secret = read(core, namespace)
        records, result = change(decode(secret))
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


def pruned(records: Records, moment: datetime.datetime) -> Records:
    """``records`` without the tokens expired at ``moment`` (and malformed ones)."""
    kept = {}
    for token_id, record in records.items():
        info = record_info(token_id, record)
        if info is not None and not info.expired(moment):
            kept[token_id] = record
    return kept
