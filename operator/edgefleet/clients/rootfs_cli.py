"""Command line of :mod:`edgefleet.clients.rootfs`: build or locate cached root filesystems.

Run as ``python -m edgefleet.clients.rootfs_cli``::

    build --arch amd64 --arch arm64     build what is missing (as root); print the paths
    path --arch arm64                   print cached paths; exit 1 if one is missing

Progress and timings go to stderr, paths to stdout (one per architecture).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from edgefleet.clients.rootfs import (
    DEFAULT_MIRROR,
    DEFAULT_PACKAGES,
    DEFAULT_SUITE,
    PLATFORMS,
    RootfsError,
    RootfsSpec,
    cache_root,
    ensure_rootfs,
)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edgefleet.clients.rootfs_cli",
        description="Debian base root filesystems, built with mmdebstrap and cached.",
    )
    parser.add_argument(
        "command",
        choices=["build", "path"],
        help="build: make missing tarballs; path: print cached paths only",
    )
    parser.add_argument(
        "--arch",
        action="append",
        choices=sorted(PLATFORMS),
        required=True,
        help="Debian architecture (repeatable)",
    )
    parser.add_argument("--suite", default=DEFAULT_SUITE)
    parser.add_argument(
        "--mirror",
        default=os.environ.get("EDGEFLEET_DEBIAN_MIRROR", DEFAULT_MIRROR),
        help="Debian mirror (default $EDGEFLEET_DEBIAN_MIRROR or %(default)s)",
    )
    parser.add_argument(
        "--no-security-updates",
        dest="security",
        action="store_false",
        help="only <suite>, without <suite>-updates and <suite>-security (another cache key)",
    )
    parser.add_argument("--include", action="append", default=[], help="extra package (repeatable)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="default ${EDGEFLEET_CACHE_DIR:-~/.cache/edgefleet}/rootfs",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = _parser().parse_args(argv)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    code = 0
    for arch in args.arch:
        spec = RootfsSpec(
            arch=arch,
            suite=args.suite,
            mirror=args.mirror,
            security=args.security,
            packages=(*DEFAULT_PACKAGES, *args.include),
        )
        if args.command == "path":
            path = (args.cache_dir or cache_root()) / f"{spec.key}.tar"
            if not path.is_file():
                say(f"rootfs {spec.key}: not cached (run the build command)")
                code = 1
                continue
            print(path, flush=True)
            continue
        try:
            result = ensure_rootfs(spec, cache=args.cache_dir, progress=say)
        except RootfsError as exc:
            say(f"error: {exc}")
            return 1
        how = f"built in {result.seconds:.1f}s" if result.built else "cached"
        say(f"rootfs {spec.key}: {how}, {result.size / 1e6:.1f} MB")
        print(result.path, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
