"""Logging: one stream — structlog's events and every stdlib record (kopf, httpx, the
Kubernetes client) rendered alike: JSON lines when not on a terminal, a readable
console on one.

Messages are constants; variable parts are key-value pairs (``namespace``, ``name``,
``digest``…). structlog events go through the stdlib ``logging`` machinery to one
handler whose :class:`structlog.stdlib.ProcessorFormatter` renders both kinds, so a
record from kopf gets the same timestamp, level, logger name and redaction as ours;
kopf's per-object records carry the object's ``namespace`` and ``name``.

Secrets are never passed to a logger: keys, tokens and passwords have no field here,
and :func:`redact` masks values under names that look secret — at any depth of nested
mappings and lists — should one slip into an event. That covers a stdlib record's
message arguments too (``log.warning("login %s", {"password": …})``): they are
redacted before they are formatted into the message. A stdlib record's ``extra``
fields are dropped except kopf's ``k8s_ref`` (reduced to namespace and name): a
library's extra may be any object, and redaction by key cannot see into its repr.
A secret passed as a bare positional string (``"%s", token``) has no key to go by;
that is what "never passed to a logger" rules out.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import IO, Any

import structlog

__all__ = ["configure", "redact"]

_SECRET_WORDS = (
    "password",
    "passwd",
    "token",
    "secret",
    "private",
    "key_pem",
    "passphrase",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "credential",
    "cookie",
)
_MAX_DEPTH = 8
#: Libraries that are chatty at INFO; their warnings still come through.
_QUIET = ("httpx", "httpcore", "urllib3", "kubernetes", "asyncio", "aiohttp.access")


def _secret(key: object) -> bool:
    return isinstance(key, str) and any(word in key.lower() for word in _SECRET_WORDS)


def _scrub(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: "[redacted]" if _secret(k) else _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_scrub(v, depth + 1) for v in value)
    return value


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask values whose key names a secret, in nested mappings and lists too."""
    for key in list(event):
        if _secret(key):
            event[key] = "[redacted]"
        elif isinstance(event[key], (Mapping, list, tuple)):
            event[key] = _scrub(event[key], 1)
    return event


def _format_args(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Format a stdlib record's ``%`` arguments into its message, redacted first."""
    args = event.pop("positional_args", None)
    if args:
        args = _scrub(args, 1)
        try:
            event["event"] = str(event["event"]) % args
        except (TypeError, ValueError, KeyError):
            event["event"] = f"{event['event']} {args!r}"
    return event


def _kopf_object(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """kopf's per-object records carry ``k8s_ref``: keep its namespace and name."""
    ref = event.pop("k8s_ref", None)
    event.pop("k8s_skip", None)
    if isinstance(ref, Mapping):
        for field in ("namespace", "name"):
            if ref.get(field) and field not in event:
                event[field] = ref[field]
    return event


def _renderer(as_json: bool) -> Any:
    if as_json:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=False)


def configure(
    *, level: int = logging.INFO, json: bool | None = None, stream: IO[str] | None = None
) -> None:
    """Route structlog and stdlib logging to one handler on ``stream`` (stderr)."""
    out = stream if stream is not None else sys.stderr
    as_json = (not out.isatty()) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            redact,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *shared,
            structlog.stdlib.ExtraAdder(allow=["k8s_ref", "k8s_skip"]),
            _kopf_object,
            _format_args,
            redact,
        ],
        # The message and its arguments apart, so the arguments are redacted first.
        pass_foreign_args=True,
        use_get_message=False,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _renderer(as_json),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
