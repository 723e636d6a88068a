"""Structured logs for the agent without extra dependencies: one JSON object a line.

Constant messages, variables as key-values (never keys, tokens or certificates).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["Logger", "get"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Logger:
    def __init__(self, stream: TextIO | None = None, level: str = "info") -> None:
        self._stream = stream
        self._level = _LEVELS[level]
        self._lock = threading.Lock()

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if _LEVELS[level] < self._level:
            return
        record = {"ts": round(time.time(), 3), "level": level, "event": event, **fields}
        line = json.dumps(record, default=str, sort_keys=False)
        with self._lock:
            stream = self._stream or sys.stderr
            stream.write(line + "\n")
            stream.flush()

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)


_default = Logger()


def get() -> Logger:
    return _default


def configure(level: str, stream: TextIO | None = None) -> Logger:
    global _default
    _default = Logger(stream, level)
    return _default
