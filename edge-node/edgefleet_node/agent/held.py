"""What the agent keeps across a restart about the desired state it holds.

- ``desired.json``: the envelope of the document accepted last. It is not verified
  again when loaded: after a document-key rotation the old signature no longer
  verifies, and forgetting the held version would let an older document through.
- ``failed.json``: the last failed attempt to activate that document (version,
  reason, when to try again). Without it a restarted agent would retry a broken
  update at once, and an agent in a restart loop would start a bad model on every
  turn; with it the retry waits as it would have, and the reason is reported again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from edgefleet_node.agent import store
from edgefleet_node.protocol import desired as proto_desired
from edgefleet_node.protocol import dsse, wire

__all__ = ["FailedAttempt", "clear_failure", "load_document", "load_failure", "save_failure"]


def load_document(state: store.StateDir) -> proto_desired.DesiredState | None:
    """The document accepted last; ``None`` when there is none (or it is unreadable)."""
    try:
        envelope = dsse.Envelope.from_bytes(state.desired.read_bytes())
        return proto_desired.DesiredState.from_bytes(envelope.payload)
    except (FileNotFoundError, wire.ProtocolError):
        return None


@dataclass(frozen=True)
class FailedAttempt:
    version: int
    retry_at: float  # device clock, seconds since the epoch
    reason: str
    message: str


def _path(state: store.StateDir) -> Path:
    return state.root / "failed.json"


def save_failure(state: store.StateDir, attempt: FailedAttempt) -> None:
    store.write_json(
        _path(state),
        {
            "version": attempt.version,
            "retryAt": attempt.retry_at,
            "reason": attempt.reason,
            "message": attempt.message[:1000],
        },
        mode=0o600,
    )


def load_failure(state: store.StateDir, version: int) -> FailedAttempt | None:
    """The failed attempt at ``version``; ``None`` when none is recorded for it. A
    damaged file counts as none: the worst case is one early retry."""
    try:
        raw = store.read_json(_path(state))
    except store.StoreError:
        return None
    if raw is None or raw.get("version") != version:
        return None
    retry_at, reason, message = raw.get("retryAt"), raw.get("reason"), raw.get("message")
    if not (
        isinstance(retry_at, int | float) and isinstance(reason, str) and isinstance(message, str)
    ):
        return None
    return FailedAttempt(version, float(retry_at), reason, message)


def clear_failure(state: store.StateDir) -> None:
    with contextlib.suppress(FileNotFoundError):
        _path(state).unlink()
        store.fsync_dir(state.root)
