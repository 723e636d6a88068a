"""The state directory and its one way of writing: atomic and durable.

Every file is written to a temporary file in the same directory, fsync'd, renamed over
the target, and the directory fsync'd; so after a power cut or a SIGKILL at any moment a
reader finds either the old or the new content, never a mix. Readers ignore and delete
leftover ``.tmp-*`` files. Layout (``docs/agent.md``)::

    <state>/identity/   key.pem (0600), cert.pem, gateway-ca.pem, identity.json,
                        trust.json (document and image keys, trust serial)
    <state>/desired.json   the last accepted desired-state envelope
    <state>/runtime.json   what runs, and the previous images kept for rollback
    <state>/status.json    last contact, conditions, clock offset (for ``status``)
    <state>/blobs/sha256/<hex>   verified content; <hex>.partial while downloading
    <state>/reports/       the bounded report queue
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edgefleet_node import strictjson

__all__ = ["StateDir", "StoreError", "atomic_write", "fsync_dir", "read_json", "write_json"]


class StoreError(Exception):
    """A state file is unreadable or corrupt (not a half-write: those cannot happen)."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync the directory."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_json(path: Path, value: Any, mode: int = 0o644) -> None:
    atomic_write(path, json.dumps(value, sort_keys=True, indent=1).encode() + b"\n", mode)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when absent; :class:`StoreError` if corrupt."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return strictjson.loads_object(data, str(path), StoreError)


class StateDir:
    """Paths of the state directory; :meth:`ensure` creates it (0700)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.identity = root / "identity"
        self.blobs = root / "blobs" / "sha256"
        self.reports = root / "reports"
        self.desired = root / "desired.json"
        self.runtime = root / "runtime.json"
        self.status = root / "status.json"

    def ensure(self) -> StateDir:
        for path in (self.root, self.identity, self.blobs, self.reports):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self

    def lock(self) -> int:
        """Hold the state directory for this process (one agent per state directory);
        returns the descriptor that holds the lock. Raises :class:`StoreError`."""
        fd = os.open(self.root / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"another agent is running on {self.root}") from exc
        return fd

    def sweep(self) -> None:
        """Delete temporary files a crash left behind (only while holding the lock)."""
        for directory in (self.root, self.identity, self.reports, self.blobs):
            for leftover in directory.glob(".tmp-*"):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()

    def blob(self, digest: str) -> Path:
        return self.blobs / digest.removeprefix("sha256:")
