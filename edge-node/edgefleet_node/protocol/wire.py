"""Wire basics: endpoints, headers, size limits, strict field readers, times.

Every message is a JSON object with camelCase keys, parsed with
:func:`edgefleet_node.strictjson.loads_object` (no duplicate keys, no NaN) and read
field by field with the readers here, which raise :class:`ProtocolError` naming the
field. Unknown fields are refused (:func:`only`), so a typo never passes silently.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from edgefleet_node import strictjson

__all__ = [
    "API_PREFIX",
    "CA_PATH",
    "DESIRED_PATH",
    "ENROLL_PATH",
    "INSTANCE_HEADER",
    "MAX_ENROLL_BODY",
    "MAX_REPORT_BODY",
    "PROTOCOL_VERSION",
    "RENEW_PATH",
    "REPORTS_PATH",
    "ProtocolError",
    "canonical",
    "check_name",
    "format_time",
    "load",
    "only",
    "opt_bool",
    "opt_float",
    "opt_int",
    "opt_str",
    "parse_time",
    "req_int",
    "req_list",
    "req_obj",
    "req_str",
    "sha256_hex",
]

PROTOCOL_VERSION: Final = "edgefleet.io/device/v1"
API_PREFIX: Final = "/edgefleet/v1"
#: Unauthenticated: the gateway's serving CA bundle, checked by the device against the
#: hash its bootstrap token carries (kubeadm's discovery, for first contact only).
CA_PATH: Final = f"{API_PREFIX}/ca"
#: Unauthenticated (TLS, no client certificate): bootstrap token + CSR.
ENROLL_PATH: Final = f"{API_PREFIX}/enroll"
#: Client certificate: a new certificate for a new CSR before the old one expires.
RENEW_PATH: Final = f"{API_PREFIX}/renew"
#: Client certificate: long-poll of the signed desired state (``?have=<version>&wait=<s>``).
DESIRED_PATH: Final = f"{API_PREFIX}/desired"
#: Client certificate: a batch of reports (idempotent by sequence number).
REPORTS_PATH: Final = f"{API_PREFIX}/reports"
#: Random per agent installation; two installations behind one identity are flagged.
INSTANCE_HEADER: Final = "X-Edgefleet-Instance"

MAX_ENROLL_BODY: Final = 64 * 1024
MAX_REPORT_BODY: Final = 256 * 1024

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class ProtocolError(ValueError):
    """A message is malformed, or does not say what the protocol requires."""


def load(data: bytes, what: str, limit: int) -> dict[str, Any]:
    """Parse a message body: size first, then strict JSON, which must be an object."""
    if len(data) > limit:
        raise ProtocolError(f"{what} is {len(data)} bytes, over the limit of {limit}")
    return strictjson.loads_object(data, what, ProtocolError)


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8. Signed bytes are always these."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def only(doc: Mapping[str, Any], what: str, allowed: set[str]) -> None:
    """Refuse fields the protocol does not define."""
    unknown = set(doc) - allowed
    if unknown:
        raise ProtocolError(f"{what}: unknown fields {sorted(unknown)}")


def req_str(
    doc: Mapping[str, Any], key: str, what: str, *, max_len: int = 253, pattern: str | None = None
) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{what}: {key!r} must be a non-empty string")
    if len(value) > max_len:
        raise ProtocolError(f"{what}: {key!r} is longer than {max_len} characters")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        raise ProtocolError(f"{what}: {key!r} is not of the form {pattern}")
    return value


def opt_str(
    doc: Mapping[str, Any], key: str, what: str, *, max_len: int = 253, pattern: str | None = None
) -> str | None:
    if doc.get(key) is None:
        return None
    return req_str(doc, key, what, max_len=max_len, pattern=pattern)


def req_int(
    doc: Mapping[str, Any], key: str, what: str, *, lo: int = 0, hi: int = 2**63 - 1
) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ProtocolError(f"{what}: {key!r} must be an integer in [{lo}, {hi}]")
    return value


def opt_int(
    doc: Mapping[str, Any], key: str, what: str, *, lo: int = 0, hi: int = 2**63 - 1
) -> int | None:
    return None if doc.get(key) is None else req_int(doc, key, what, lo=lo, hi=hi)


def opt_float(
    doc: Mapping[str, Any], key: str, what: str, *, lo: float = 0.0, hi: float = 1e12
) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise ProtocolError(f"{what}: {key!r} must be a number in [{lo}, {hi}]")
    return float(value)


def opt_bool(doc: Mapping[str, Any], key: str, what: str) -> bool | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ProtocolError(f"{what}: {key!r} must be true or false")
    return value


def req_obj(doc: Mapping[str, Any], key: str, what: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{what}: {key!r} must be an object")
    return value


def req_list(doc: Mapping[str, Any], key: str, what: str, *, max_len: int) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise ProtocolError(f"{what}: {key!r} must be a list")
    if len(value) > max_len:
        raise ProtocolError(f"{what}: {key!r} has {len(value)} items, over {max_len}")
    return value


def check_name(value: str, what: str) -> str:
    """A Kubernetes object name usable as a device or model name (DNS label)."""
    if len(value) > 63 or _NAME.fullmatch(value) is None:
        raise ProtocolError(f"{what} {value!r} is not a DNS label")
    return value


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, whole seconds (what the API server stores)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str, what: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ProtocolError(f"{what}: {value!r} is not an RFC 3339 time") from exc
    if moment.tzinfo is None:
        raise ProtocolError(f"{what}: {value!r} has no time zone")
    return moment.astimezone(datetime.UTC)
