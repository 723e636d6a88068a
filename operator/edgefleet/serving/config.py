"""Configuration of the inference server, read from ``EDGEFLEET_*`` environment variables.

- ``EDGEFLEET_MODEL_PATH``: the ONNX file to serve
  (default ``/opt/edgefleet/model/model.onnx``);
- ``EDGEFLEET_MODEL_NAME``, ``EDGEFLEET_MODEL_VERSION``: shown in responses and
  metrics (defaults ``model``, ``unknown``);
- ``EDGEFLEET_MODEL_SHA256``: the file's expected sha256 (hex, ``sha256:`` prefix
  allowed); checked at load, a mismatch refuses to serve; unset means the server
  reports the sha256 it measured;
- ``EDGEFLEET_PORT`` (default ``8080``), ``EDGEFLEET_BIND`` (default ``0.0.0.0``);
- ``EDGEFLEET_THREADS``: onnxruntime intra-op threads, ``0`` = one per core (default);
- ``EDGEFLEET_MAX_BODY_BYTES``: largest accepted request body (default 8 MiB).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_MODEL_PATH", "ConfigError", "ServingConfig"]

DEFAULT_MODEL_PATH = "/opt/edgefleet/model/model.onnx"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ConfigError(ValueError):
    """An ``EDGEFLEET_*`` variable has a value the server cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is outside {low}..{high}")
    return value


@dataclass(frozen=True)
class ServingConfig:
    """Everything the server needs to start; build it with :meth:`from_env`."""

    model_path: str = DEFAULT_MODEL_PATH
    model_name: str = "model"
    model_version: str = "unknown"
    model_sha256: str = ""
    port: int = 8080
    bind: str = "0.0.0.0"  # noqa: S104 - a container's server must be reachable from outside
    threads: int = 0
    max_body_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.model_sha256 and not _SHA256.fullmatch(self.model_sha256):
            raise ConfigError(
                f"EDGEFLEET_MODEL_SHA256={self.model_sha256!r} is not 64 lowercase hex digits"
            )
        if not self.model_path:
            raise ConfigError("EDGEFLEET_MODEL_PATH is empty")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServingConfig:
        """Read the configuration from ``env`` (usually ``os.environ``)."""
        sha = env.get("EDGEFLEET_MODEL_SHA256", "").strip().lower()
        sha = sha.removeprefix("sha256:")
        return cls(
            model_path=env.get("EDGEFLEET_MODEL_PATH", "").strip() or DEFAULT_MODEL_PATH,
            model_name=env.get("EDGEFLEET_MODEL_NAME", "").strip() or "model",
            model_version=env.get("EDGEFLEET_MODEL_VERSION", "").strip() or "unknown",
            model_sha256=sha,
            port=_int(env, "EDGEFLEET_PORT", 8080, 0, 65535),
            bind=env.get("EDGEFLEET_BIND", "").strip() or "0.0.0.0",  # noqa: S104
            threads=_int(env, "EDGEFLEET_THREADS", 0, 0, 1024),
            max_body_bytes=_int(env, "EDGEFLEET_MAX_BODY_BYTES", 8 * 1024 * 1024, 1, 1 << 31),
        )
