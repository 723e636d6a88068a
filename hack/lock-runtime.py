#!/usr/bin/env python3
"""Regenerate ``operator/edgefleet/domain/runtime_lock.json`` from the runtime pins.

For every supported platform in :mod:`edgefleet.domain.runtime_pins` this downloads
the pinned wheels with pip (from PyPI, for that platform's tags), checks that each
file installs on that platform, and records file name, size and sha256. Run it after
changing a pin, review the diff, commit it:

    .venv/bin/python hack/lock-runtime.py            # rewrite the lock
    .venv/bin/python hack/lock-runtime.py --check    # exit 1 if the lock is stale
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from edgefleet.clients.wheels import file_sha256, pip_download
from edgefleet.domain.runtime_lock import (
    LOCK_FILE,
    LockedWheel,
    check_wheel_filename,
    render_lock,
    wheel_tags,
)
from edgefleet.domain.runtime_pins import SUPPORTED_PLATFORMS, require_runtime

LOCK_PATH = Path(__file__).resolve().parents[1] / "operator" / "edgefleet" / "domain" / LOCK_FILE


def lock_platform(platform: str, workdir: Path) -> list[LockedWheel]:
    runtime = require_runtime(platform)
    dest = workdir / runtime.cache_key()
    pip_download(runtime, [pin.requirement() for pin in runtime.pins], dest)
    wheels = []
    for path in sorted(dest.glob("*.whl")):
        check_wheel_filename(path.name, runtime)
        name, version, _ = wheel_tags(path.name)
        wheels.append(LockedWheel(name, version, path.name, file_sha256(path), path.stat().st_size))
        print(f"{platform:12} {path.name}  {path.stat().st_size / 1e6:.1f} MB", file=sys.stderr)
    return wheels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the committed lock")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgefleet-lock-") as tmp:
        text = render_lock({p: lock_platform(p, Path(tmp)) for p in SUPPORTED_PLATFORMS})
    if args.check:
        current = LOCK_PATH.read_text() if LOCK_PATH.exists() else ""
        if current != text:
            print(f"{LOCK_PATH} is stale; run hack/lock-runtime.py", file=sys.stderr)
            return 1
        print(f"{LOCK_PATH} is up to date", file=sys.stderr)
        return 0
    LOCK_PATH.write_text(text)
    print(f"wrote {LOCK_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
