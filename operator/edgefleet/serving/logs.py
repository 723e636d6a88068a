"""Structured log lines for the inference server: one JSON object per line.

The image has no structlog, so this is the smallest thing that gives the same
shape: a constant ``event`` name plus key-value fields, a UTC timestamp and a
level, written whole under a lock so lines from request threads never interleave.
"""

from __future__ import annotations

import datetime
import json
import sys
import threading
from typing import IO

__all__ = ["JsonLog"]


class JsonLog:
    """Writes ``{"ts": …, "level": …, "event": …, **fields}`` lines to a text stream."""

    def __init__(self, stream: IO[str] | None = None, **bound: object) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._bound = dict(bound)
        self._lock = threading.Lock()

    def _write(self, level: str, event: str, fields: dict[str, object]) -> None:
        record: dict[str, object] = {
            "ts": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "event": event,
        }
        record.update(self._bound)
        record.update(fields)
        line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):  # closed stdout must not take a request down
                pass

    def info(self, event: str, **fields: object) -> None:
        """Log a normal event."""
        self._write("info", event, fields)

    def warning(self, event: str, **fields: object) -> None:
        """Log something a user may have to act on."""
        self._write("warning", event, fields)

    def error(self, event: str, **fields: object) -> None:
        """Log a failure."""
        self._write("error", event, fields)
