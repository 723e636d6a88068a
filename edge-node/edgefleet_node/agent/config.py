"""Agent configuration: flags > ``EDGEFLEET_NODE_*`` environment > TOML file > defaults.

The file (``--config``, default ``/etc/edgefleet-node/config.toml`` when it exists)
holds the keys of :data:`FIELDS` at its top level, e.g. ``state_dir = "/data/ef"``;
the environment spells them upper-case with the prefix (``EDGEFLEET_NODE_STATE_DIR``).
Unknown keys and badly typed values are errors naming the key and where it came from.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CONFIG", "ENV_PREFIX", "FIELDS", "Config", "ConfigError", "resolve"]

ENV_PREFIX = "EDGEFLEET_NODE_"
DEFAULT_CONFIG = Path("/etc/edgefleet-node/config.toml")


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    state_dir: Path = Path("/var/lib/edgefleet-node")
    runtime: str = "docker"  # docker | simulated
    platform: str = ""  # empty: detected (linux/amd64, linux/arm64, ...)
    poll_wait: int = 60
    report_interval: float = 60.0
    stall_timeout: float = 60.0
    probe_timeout: float = 120.0
    disk_reserve_mb: int = 64
    queue_capacity: int = 512
    backoff_cap: float = 300.0
    log_level: str = "info"
    # where the host's /dev is seen: "/" on the device; "/host" for an agent in a
    # container that mounts the host's /dev at /host/dev (read-only is enough)
    dev_root: Path = Path("/")
    # set when several agents share one container engine (a demo or test on one
    # machine): each keeps to its own containers and image tags; [a-z0-9], ≤ 32
    runtime_scope: str = ""


FIELDS = {f.name: f for f in fields(Config)}
_CHOICES = {"runtime": ("docker", "simulated"), "log_level": ("debug", "info", "warning", "error")}
_SCOPE = re.compile(r"[a-z0-9]{0,32}")
_BOUNDS: dict[str, tuple[float, float]] = {
    "poll_wait": (1, 120),
    "report_interval": (1, 86400),
    "stall_timeout": (1, 3600),
    "probe_timeout": (1, 3600),
    "disk_reserve_mb": (0, 1 << 20),
    "queue_capacity": (1, 100000),
    "backoff_cap": (1, 86400),
}


def _convert(name: str, value: Any, origin: str) -> Any:
    default = getattr(Config(), name)
    try:
        if isinstance(default, Path):
            out: Any = Path(str(value))
        elif isinstance(default, bool) or isinstance(value, bool):
            raise TypeError
        elif isinstance(default, int):
            out = int(value)
        elif isinstance(default, float):
            out = float(value)
        else:
            if not isinstance(value, str):
                raise TypeError
            out = value
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{origin}: {name} = {value!r} is not a {type(default).__name__}"
        ) from exc
    if name == "dev_root" and not out.is_absolute():
        raise ConfigError(f"{origin}: dev_root must be an absolute path")
    if name == "runtime_scope" and not _SCOPE.fullmatch(out):
        raise ConfigError(f"{origin}: runtime_scope must be up to 32 of a-z and 0-9")
    if name in _CHOICES and out not in _CHOICES[name]:
        raise ConfigError(f"{origin}: {name} must be one of {', '.join(_CHOICES[name])}")
    if name in _BOUNDS and not _BOUNDS[name][0] <= out <= _BOUNDS[name][1]:
        low, high = _BOUNDS[name]
        raise ConfigError(f"{origin}: {name} must be between {low:g} and {high:g}")
    return out


def resolve(flags: Mapping[str, Any], env: Mapping[str, str], config_file: Path | None) -> Config:
    values: dict[str, Any] = {}
    path = config_file or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if path is not None:
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"the config file {path} does not exist") from exc
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from exc
        for key, value in doc.items():
            if key not in FIELDS:
                raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join(FIELDS)})")
            values[key] = _convert(key, value, str(path))
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "TOKEN":
            name = key[len(ENV_PREFIX) :].lower()
            if name in ("config", "gateway"):
                continue
            if name not in FIELDS:
                raise ConfigError(f"environment: unknown variable {key}")
            values[name] = _convert(name, value, f"environment {key}")
    for key, value in flags.items():
        if value is not None:
            values[key] = _convert(key, value, f"--{key.replace('_', '-')}")
    return Config(**values)


def environ() -> Mapping[str, str]:
    return dict(os.environ)
