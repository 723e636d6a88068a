"""Typed errors of the OCI registry client.

A :class:`RegistryError` carries the HTTP status, the registry's error code (from the
distribution spec's ``{"errors":[{"code","message"}]}`` body) and its message, so
callers can decide (``not_found``, retry or give up) and users see what went wrong.
Messages never contain credentials or tokens.
"""

from __future__ import annotations

import json

import httpx

from edgefleet.domain.failures import RemoteError

__all__ = [
    "BlobTooLargeError",
    "DigestMismatchError",
    "RegistryAuthError",
    "RegistryError",
    "error_from_response",
]


class RegistryError(RemoteError):
    """A registry request failed or returned something we cannot accept.

    Classified by :func:`edgefleet.domain.failures.classify` from ``status``/``code``;
    subclasses for content we cannot accept set ``invalid`` (permanent).
    """

    invalid_content = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        operation: str = "",
    ) -> None:
        self.message = message
        self.operation = operation
        parts = [operation] if operation else []
        if status is not None:
            parts.append(f"HTTP {status}")
        if code:
            parts.append(code)
        prefix = " ".join(parts)
        super().__init__(
            f"{prefix}: {message}" if prefix else message,
            status=status,
            code=code,
            invalid=self.invalid_content,
        )

    @property
    def not_found(self) -> bool:
        return self.status == 404


class RegistryAuthError(RegistryError):
    """The registry refused our credentials, or asked for ones we do not have."""


class DigestMismatchError(RegistryError):
    """Content did not hash to the digest it was addressed by or reported with."""

    invalid_content = True


class BlobTooLargeError(RegistryError):
    """A download exceeded the size the caller allowed."""

    invalid_content = True


def error_from_response(status: int, body: bytes, operation: str) -> RegistryError:
    """A :class:`RegistryError` from an error response's status and (bounded) body."""
    code, message = None, f"request failed ({httpx.codes.get_reason_phrase(status) or status})"
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code = str(first.get("code") or "") or None
        message = str(first.get("message") or message)
    error_type = RegistryAuthError if status in (401, 403) else RegistryError
    return error_type(message, status=status, code=code, operation=operation)
