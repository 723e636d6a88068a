"""Strict JSON for signed and content-addressed documents, shared by agent and operator.

Rejects what a lenient parser would quietly accept and another reader might read
differently: duplicate keys (which value wins?), ``NaN``/``Infinity``, invalid UTF-8,
and anything but an object at the top.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads_object"]


class _RejectedError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _RejectedError(f"duplicate JSON key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise _RejectedError(f"invalid JSON constant {name}")


def loads_object(data: bytes, what: str, error: type[Exception]) -> dict[str, Any]:
    """The JSON object in ``data``; anything else raises ``error`` naming ``what``."""
    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
        )
    except _RejectedError as exc:
        raise error(f"{what}: {exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise error(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise error(f"{what} must be a JSON object")
    return value
