"""Fetching the pinned runtime wheels of a platform from PyPI, verified and cached.

:func:`fetch_wheels` runs ``pip download --only-binary=:all: --no-deps`` for a
foreign platform (``--platform`` tags of Debian bookworm, ``--python-version 3.11
--implementation cp --abi cp311``) with ``--require-hashes``, then checks every
file's name, size and sha256 against the committed lock itself. Results are cached
under ``cache_dir/<platform>-<hash of pin set>/``; a file lock makes concurrent
callers (threads or processes) wait for one download, and a download lands in the
cache only after it verified, by an atomic rename. A cache hit is re-verified.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from edgefleet import filelock
from edgefleet.api.conditions import Reason
from edgefleet.domain import runtime_layer
from edgefleet.domain.failures import FailureError
from edgefleet.domain.oci import FileEntry
from edgefleet.domain.runtime_lock import LOCK_FILE, LockedWheel, RuntimeLock, parse_lock
from edgefleet.domain.runtime_pins import PYTHON_ABI, PYTHON_VERSION, RuntimePins, require_runtime

__all__ = [
    "WheelFetchError",
    "fetch_wheels",
    "file_sha256",
    "load_lock",
    "pip_download",
    "runtime_layer_entries",
    "serving_sources",
]

PIP_TIMEOUT = 900.0


class WheelFetchError(FailureError):
    """pip could not download a pinned wheel, or a file does not match the lock.

    Temporary (``RuntimeUnavailable``): the package index may be back next time.
    """

    def __init__(self, message: str) -> None:
        super().__init__(Reason.RUNTIME_UNAVAILABLE, message, permanent=False)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_lock() -> RuntimeLock:
    """The committed ``runtime_lock.json`` of :mod:`edgefleet.domain`."""
    text = importlib.resources.files("edgefleet.domain").joinpath(LOCK_FILE).read_text()
    return parse_lock(text)


def pip_download(
    runtime: RuntimePins, requirements: Sequence[str], dest: Path, *, python: str = sys.executable
) -> None:
    """Run ``pip download`` of ``requirements`` lines for ``runtime``'s platform into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    req_file = dest / "requirements.txt"
    req_file.write_text("".join(line + "\n" for line in requirements))
    argv = [python, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
            "--only-binary=:all:", "--no-deps", "--python-version", PYTHON_VERSION,
            "--implementation", "cp", "--abi", PYTHON_ABI, "--dest", str(dest)]  # fmt: skip
    for tag in runtime.wheel_platform_tags:
        argv += ["--platform", tag]
    argv += ["--requirement", str(req_file)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise WheelFetchError(
            f"pip download for {runtime.platform} took over {PIP_TIMEOUT:.0f}s"
        ) from None
    finally:
        req_file.unlink(missing_ok=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise WheelFetchError(
            f"pip download for {runtime.platform} failed (exit {result.returncode}):\n{tail}"
        )


def _verify(directory: Path, wheels: Sequence[LockedWheel]) -> str | None:
    """None when ``directory`` holds exactly the locked files; else what is wrong."""
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    expected = sorted(w.filename for w in wheels)
    if present != expected:
        return f"files {present} instead of {expected}"
    for wheel in wheels:
        path = directory / wheel.filename
        size = path.stat().st_size
        if size != wheel.size:
            return f"{wheel.filename} has {size} bytes, the lock says {wheel.size}"
        sha = file_sha256(path)
        if sha != wheel.sha256:
            return f"{wheel.filename} has sha256 {sha}, the lock says {wheel.sha256}"
    return None


def fetch_wheels(
    platform: str, cache_dir: Path, *, lock: RuntimeLock | None = None, python: str = sys.executable
) -> list[Path]:
    """The verified wheel files of ``platform``'s pin set, downloading them once.

    Raises :class:`~edgefleet.domain.runtime_pins.UnsupportedPlatformError` for a
    platform without a runtime, :class:`~edgefleet.domain.runtime_lock.LockError`
    when the lock does not match the pins, :class:`WheelFetchError` otherwise.
    """
    runtime = require_runtime(platform)
    wheels = (lock if lock is not None else load_lock()).wheels_for(runtime)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = runtime.cache_key()
    target = cache_dir / key
    with filelock.locked(cache_dir / f".{key}.lock"):
        if _verify(target, wheels) is not None:
            staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
            try:
                requirements = [f"{w.name}=={w.version} --hash=sha256:{w.sha256}" for w in wheels]
                pip_download(runtime, requirements, staging, python=python)
                problem = _verify(staging, wheels)
                if problem is not None:
                    raise WheelFetchError(
                        f"download for {runtime.platform} does not match the lock: {problem}"
                    )
                if target.exists():
                    shutil.rmtree(target)
                os.rename(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        else:
            os.utime(target)  # lets a cache cleaner see which sets are in use
    return [target / w.filename for w in sorted(wheels, key=lambda w: w.filename)]


def serving_sources() -> dict[str, bytes]:
    """The modules of :mod:`edgefleet.serving` as shipped with this operator."""
    package = importlib.resources.files("edgefleet.serving")
    return {
        item.name: item.read_bytes()
        for item in package.iterdir()
        if item.is_file() and item.name.endswith(".py")
    }


def runtime_layer_entries(platform: str, cache_dir: Path) -> list[FileEntry]:
    """The runtime layer's entries for ``platform``: verified wheels plus the server."""
    paths = fetch_wheels(platform, cache_dir)
    return runtime_layer.runtime_entries(
        [(p.name, p.read_bytes()) for p in paths], serving_sources()
    )
