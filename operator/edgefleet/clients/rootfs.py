"""Debian base root filesystems, built locally with mmdebstrap and cached.

edgefleet's images pull no base image from any public registry: they start from a
root filesystem made from Debian packages: ``mmdebstrap --variant=essential`` (only the
Essential set plus Python and the C++/OpenMP runtimes onnxruntime needs), for each
architecture, foreign ones through qemu-user and binfmt (``hack/system-deps.sh``).
Docs, man pages, info pages and translations are left out (copyright files stay),
/usr is merged by mmdebstrap's hook instead of the usrmerge package (which would
pull in perl); apt lists and caches are removed; the variant has no apt.

Tarballs are cached, keyed by suite, architecture and a hash of the package list
and recipe, under ``${EDGEFLEET_CACHE_DIR:-~/.cache/edgefleet}/rootfs/``; a build
takes a file lock and ends with an atomic rename, so two runs never build the same
tarball twice and nobody sees a half-written one. A cached rootfs costs nothing.

CLI (:mod:`edgefleet.clients.rootfs_cli`)::

    python -m edgefleet.clients.rootfs_cli build --arch amd64 --arch arm64
    python -m edgefleet.clients.rootfs_cli path --arch arm64
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet import filelock

__all__ = [
    "DEFAULT_MIRROR",
    "DEFAULT_PACKAGES",
    "DEFAULT_SECURITY_MIRROR",
    "DEFAULT_SUITE",
    "PLATFORMS",
    "Rootfs",
    "RootfsError",
    "RootfsSpec",
    "cache_root",
    "ensure_rootfs",
]

DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEFAULT_PACKAGES = ("python3", "python3-venv", "libstdc++6", "libgomp1", "ca-certificates")
#: Debian architecture -> OCI platform.
PLATFORMS = {"amd64": "linux/amd64", "arm64": "linux/arm64", "armhf": "linux/arm/v7"}
#: Fixed timestamps: the same mirror content gives the same tarball.
SOURCE_DATE_EPOCH = 1704067200  # 2024-01-01T00:00:00Z
_RECIPE_VERSION = 2  # bump when the trimming or hooks below change
# Sets up the merged-/usr symlinks itself and installs usr-is-merged, so bookworm's
# init-system-helpers does not pull in usrmerge and with it all of perl (~55 MB).
_HOOK_DIRS = ("/usr/share/mmdebstrap/hooks/merged-usr",)
_DPKG_OPTS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
)
# The engine bind-mounts its own; the host's must not leak into an image.
_CUSTOMIZE_HOOKS = (
    ': > "$1/etc/resolv.conf"',
    ': > "$1/etc/hostname"',
    'rm -rf "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old',
)

# apt's words for a mirror caught mid-sync: worth a retry after a pause.
_MIRROR_INCONSISTENT = ("Mirror sync in progress", "Hash Sum mismatch", "File has unexpected size")
_MIRROR_RETRY_DELAYS = (15.0, 60.0)

Progress = Callable[[str], None]


class RootfsError(RuntimeError):
    """A root filesystem could not be built."""


class _MirrorInconsistentError(RootfsError):
    """The mirror's indexes did not match its Release file (a sync in progress)."""


def cache_root() -> Path:
    """``${EDGEFLEET_CACHE_DIR:-~/.cache/edgefleet}/rootfs``."""
    base = os.environ.get("EDGEFLEET_CACHE_DIR") or str(Path.home() / ".cache" / "edgefleet")
    return Path(base) / "rootfs"


@dataclass(frozen=True)
class RootfsSpec:
    """What goes into one root filesystem."""

    arch: str
    suite: str = DEFAULT_SUITE
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    security: bool = True  # include <suite>-security (and <suite>-updates)
    mirror: str = field(default=DEFAULT_MIRROR, compare=False)
    security_mirror: str = field(default=DEFAULT_SECURITY_MIRROR, compare=False)

    def __post_init__(self) -> None:
        if self.arch not in PLATFORMS:
            raise RootfsError(f"unknown architecture {self.arch!r}; known: {', '.join(PLATFORMS)}")

    @property
    def platform(self) -> str:
        """The OCI platform string, e.g. ``linux/arm64``."""
        return PLATFORMS[self.arch]

    @property
    def key(self) -> str:
        """``<suite>-<arch>-<hash>``: the hash covers the package list and the recipe."""
        recipe: dict[str, object] = {
            "packages": sorted(set(self.packages)),
            "dpkg": _DPKG_OPTS,
            "hooks": _CUSTOMIZE_HOOKS,
            "hook_dirs": _HOOK_DIRS,
            "epoch": SOURCE_DATE_EPOCH,
            "version": _RECIPE_VERSION,
        }
        if not self.security:
            recipe["security"] = False
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
        return f"{self.suite}-{self.arch}-{digest[:12]}"

    def sources(self) -> list[str]:
        """One-line apt sources: the suite, its updates and its security updates."""
        sources = [f"deb {self.mirror} {self.suite} main"]
        if self.security:
            sources += [
                f"deb {self.mirror} {self.suite}-updates main",
                f"deb {self.security_mirror} {self.suite}-security main",
            ]
        return sources

    def argv(self, out: Path) -> list[str]:
        """The mmdebstrap command that writes this rootfs as a tarball to ``out``."""
        cmd = [
            "mmdebstrap",
            "--variant=essential",
            f"--architectures={self.arch}",
            f"--include={','.join(sorted(set(self.packages)))}",
            "--format=tar",
        ]
        cmd += [f"--dpkgopt={o}" for o in _DPKG_OPTS]
        cmd += [f"--hook-dir={d}" for d in _HOOK_DIRS]
        cmd += [f"--customize-hook={h}" for h in _CUSTOMIZE_HOOKS]
        return [*cmd, self.suite, str(out), *self.sources()]


@dataclass(frozen=True)
class Rootfs:
    """A cached rootfs tarball."""

    spec: RootfsSpec
    path: Path
    size: int
    built: bool  # False when it came from the cache
    seconds: float


def _run_mmdebstrap(
    argv: Sequence[str], *, timeout: float, progress: Progress, prefix: str, log_path: Path
) -> None:
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH), LC_ALL="C.UTF-8")
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
    except FileNotFoundError:
        raise RootfsError(
            f"{prefix}: mmdebstrap is not installed (Debian: apt install mmdebstrap; "
            "foreign architectures also need qemu-user-static and arch-test)"
        ) from None
    with log_path.open("w") as log, proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if line.startswith(("I: ", "E: ", "W: ")):
                progress(f"{prefix} [{time.monotonic() - start:6.1f}s] {line.rstrip()}")
            if time.monotonic() - start > timeout:
                proc.kill()
                raise RootfsError(
                    f"{prefix}: mmdebstrap took longer than {timeout:.0f}s; log: {log_path}"
                )
        code = proc.wait()
    if code != 0:
        text = log_path.read_text(errors="replace")
        tail = "\n".join(text.splitlines()[-25:])
        if any(marker in text for marker in _MIRROR_INCONSISTENT):
            raise _MirrorInconsistentError(
                f"{prefix}: the Debian mirror served inconsistent indexes (full log {log_path}); "
                "try later, another EDGEFLEET_DEBIAN_MIRROR, or --no-security-updates.\n" + tail
            )
        hint = (
            "foreign architectures need qemu-user-static, arch-test and binfmt_misc: run "
            "hack/system-deps.sh"
            if "arch-test" in text or "cannot be executed" in text or "exec format" in text
            else "see the log"
        )
        raise RootfsError(
            f"{prefix}: mmdebstrap failed with exit code {code} (full log {log_path}); "
            f"{hint}.\n{tail}"
        )


def ensure_rootfs(
    spec: RootfsSpec,
    *,
    cache: Path | None = None,
    progress: Progress | None = None,
    timeout: float = 3600.0,
) -> Rootfs:
    """Return the cached tarball for ``spec``, building it first if it is missing."""
    say = progress or (lambda _msg: None)
    directory = cache or cache_root()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{spec.key}.tar"
    prefix = f"rootfs {spec.key}"
    if target.is_file():
        return Rootfs(spec, target, target.stat().st_size, built=False, seconds=0.0)
    if os.geteuid() != 0:
        raise RootfsError(
            f"{prefix}: building needs root (mmdebstrap --mode=root); "
            "run `sudo edgefleet image build-base …` (or `python -m edgefleet.clients.rootfs_cli "
            "build`) once"
        )
    with filelock.locked(directory / f"{spec.key}.lock"):
        if target.is_file():  # another run built it while we waited for the lock
            say(f"{prefix}: built by another run meanwhile")
            return Rootfs(spec, target, target.stat().st_size, built=False, seconds=0.0)
        tmp = directory / f".{spec.key}.{os.getpid()}.tmp.tar"
        say(
            f"{prefix}: building {spec.platform} with mmdebstrap (packages: "
            f"{', '.join(spec.packages)}) from {spec.mirror}"
        )
        start = time.monotonic()
        try:
            for delay in (*_MIRROR_RETRY_DELAYS, None):
                try:
                    _run_mmdebstrap(
                        spec.argv(tmp),
                        timeout=timeout,
                        progress=say,
                        prefix=prefix,
                        log_path=directory / f"{spec.key}.log",
                    )
                    break
                except _MirrorInconsistentError:
                    if delay is None:
                        raise
                    say(f"{prefix}: mirror indexes inconsistent (mid-sync?); retry in {delay:.0f}s")
                    time.sleep(delay)  # a back-off before asking the mirror again
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        seconds = time.monotonic() - start
        size = target.stat().st_size
        say(f"{prefix}: built in {seconds:.1f}s, {size / 1e6:.1f} MB -> {target}")
        return Rootfs(spec, target, size, built=True, seconds=seconds)
