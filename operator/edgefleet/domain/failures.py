"""Every failure typed: one mapping from an exception to (reason, temporary|permanent).

A reconcile pass never lets an exception decide the status by accident. Whatever
escapes it goes through :func:`classify`, which returns a :class:`Failure`: the
condition reason (a constant of :class:`edgefleet.api.conditions.Reason`), a message a
user can act on, and whether a retry can help (``permanent=False``: Reconciling=True,
retried with backoff) or only a human can (``permanent=True``: Stalled=True, waiting
for a change of the spec or of the environment).

The rules, in order (the first match wins):

- :class:`FailureError` and its subclasses carry their own failure (the code that
  raised knew best);
- :class:`RemoteError` (a registry, PyPI, an HTTP server) by what the server said:
  401/403 are permanent (:data:`Reason.REGISTRY_ACCESS_DENIED` — credentials do not
  fix themselves), a digest mismatch and an invalid body are permanent, 404, 408,
  429, 5xx and transport errors (code ``TRANSPORT``: timeouts, refused connections)
  are temporary, any other 4xx, or a failure without a response that is not a
  transport error (a name the registry grammar refuses), is permanent;
- a body that fails validation (a pydantic ``ValidationError``, e.g. an object stored
  before a rule existed) is :data:`Reason.INVALID_SPEC`, permanent;
- unreadable OCI content (:class:`OCIError`) is permanent;
- a platform without a runtime, or a runtime lock that does not match the pins, is
  permanent (only a new operator release helps);
- anything else is :data:`Reason.INTERNAL_ERROR`, temporary (retried with backoff and
  visible in status with its type, never a silent "building").

Client modules make their exceptions subclasses of :class:`FailureError` or
:class:`RemoteError`, so this table stays in the pure domain layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from edgefleet.api.conditions import Reason
from edgefleet.domain.oci import OCIError
from edgefleet.domain.runtime_lock import LockError
from edgefleet.domain.runtime_pins import UnsupportedPlatformError

__all__ = [
    "RETRY_BASE",
    "RETRY_MAX",
    "TRANSPORT",
    "Failure",
    "FailureError",
    "RemoteError",
    "classify",
    "in_context",
    "retry_delay",
]

#: Temporary failures retry after 10 s, 20 s, 40 s … at most 5 minutes apart.
RETRY_BASE, RETRY_MAX = 10.0, 300.0
_MAX_MESSAGE = 2048
_TEMPORARY_STATUS = frozenset({404, 408, 425, 429})
#: The ``code`` of a :class:`RemoteError` for connection failures and timeouts.
TRANSPORT = "TRANSPORT"


def retry_delay(retry: int) -> float:
    """Seconds before the next attempt after ``retry`` failed ones (exponential, capped)."""
    return float(min(RETRY_MAX, RETRY_BASE * 2 ** min(max(retry, 0), 10)))


@dataclass(frozen=True)
class Failure:
    """A failure as status shows it."""

    reason: str
    message: str
    permanent: bool

    @property
    def temporary(self) -> bool:
        return not self.permanent


class FailureError(Exception):
    """An error that knows its condition reason and whether a retry can help."""

    def __init__(self, reason: str, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.permanent = permanent

    @property
    def failure(self) -> Failure:
        return Failure(self.reason, self.message, self.permanent)


class RemoteError(Exception):
    """A remote service (registry, package index, web server) failed a request.

    ``status`` is the HTTP status (None when no response came), ``code`` a service
    error code (``TRANSPORT`` for connection failures and timeouts), ``invalid`` marks
    a response whose content we cannot accept (digest mismatch, malformed body).
    """

    reason: str = Reason.REGISTRY_ERROR

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        invalid: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.invalid = invalid


def _remote(exc: RemoteError) -> Failure:
    text = _text(exc)
    if exc.status in (401, 403):
        return Failure(
            Reason.REGISTRY_ACCESS_DENIED,
            f"{text} (check the operator's registry credentials and their permissions)",
            permanent=True,
        )
    if exc.invalid:
        return Failure(exc.reason, text, permanent=True)
    if exc.status is None:  # no answer: a transport failure, else a malformed exchange
        return Failure(exc.reason, text, permanent=exc.code != TRANSPORT)
    if exc.status >= 500 or exc.status in _TEMPORARY_STATUS:
        return Failure(exc.reason, text, permanent=False)
    return Failure(exc.reason, text, permanent=True)


def _text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def classify(exc: BaseException) -> Failure:
    """The :class:`Failure` an exception stands for (see the module docstring)."""
    if isinstance(exc, FailureError):
        return exc.failure
    if isinstance(exc, RemoteError):
        return _remote(exc)
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'object'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        return Failure(Reason.INVALID_SPEC, _text(ValueError(problems)), permanent=True)
    if isinstance(exc, UnsupportedPlatformError):
        return Failure(Reason.UNSUPPORTED_PLATFORM, _text(exc), permanent=True)
    if isinstance(exc, LockError):
        return Failure(
            Reason.BUILD_FAILED, f"the operator's runtime lock: {_text(exc)}", permanent=True
        )
    if isinstance(exc, OCIError):
        return Failure(Reason.INVALID_CONTENT, _text(exc), permanent=True)
    return Failure(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {_text(exc)}", permanent=False)


def in_context(exc: BaseException, what: str) -> FailureError:
    """``exc`` classified, its message prefixed with ``what`` (raise it ``from exc``)."""
    failure = classify(exc)
    return FailureError(failure.reason, f"{what}: {failure.message}", permanent=failure.permanent)
