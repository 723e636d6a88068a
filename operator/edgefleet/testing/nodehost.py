"""What the one-node cluster needs from the host, and gives back: the sandbox (pause)
image built from a tiny static C program, kubelet's cgroup root in every v1 hierarchy,
and at teardown the containerd shims and pod cgroups that outlive their parents.
Used by :mod:`edgefleet.testing.node`."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import oci

__all__ = [
    "PAUSE_REPO",
    "PAUSE_TAG",
    "kill_shims",
    "make_cgroup_root",
    "pause_binary",
    "push_pause_image",
    "remove_cgroups",
]

PAUSE_REPO, PAUSE_TAG = "edgefleet/pause", "3.10"
_PAUSE_C = r"""
#include <signal.h>
#include <unistd.h>
static void bye(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGTERM, bye); signal(SIGINT, bye);
    for (;;) pause();
}
"""


def pause_binary(cache: Path | None = None) -> Path:
    """A static ``pause``: sleeps until SIGTERM (built once with gcc, cached)."""
    cache = cache or Path.home() / ".cache" / "edgefleet" / "node"
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"pause-{hashlib.sha256(_PAUSE_C.encode()).hexdigest()[:12]}"
    if not out.exists():
        src = cache / "pause.c"
        src.write_text(_PAUSE_C)
        tmp = out.with_suffix(".tmp")
        subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(tmp), str(src)], check=True)
        tmp.rename(out)
    return out


def push_pause_image(registry: RegistryClient) -> str:
    """Push the sandbox image; return its reference (by tag, as containerd wants)."""
    layer = oci.build_layer([oci.FileEntry.file("pause", pause_binary().read_bytes(), 0o755)])
    platform = oci.Platform("linux", "amd64")
    config = oci.image_config(platform, [layer.diff_id], entrypoint=["/pause"], user="65535")
    manifest = oci.image_manifest(config, [layer])
    for blob in (layer.blob, config):
        registry.push_blob(PAUSE_REPO, blob)
    registry.put_manifest(PAUSE_REPO, PAUSE_TAG, manifest)
    return f"{registry.host}/{PAUSE_REPO}:{PAUSE_TAG}"


def kill_shims(marker: str) -> None:
    """containerd's shims outlive containerd on purpose (they re-parent away from
    it): kill the ones whose command line names ``marker`` (the node's directory)."""
    needle = marker.encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError, ValueError):
            argv = cmdline.read_bytes()
            if b"containerd-shim" in argv and needle in argv:
                os.kill(int(cmdline.parent.name), signal.SIGKILL)


def remove_cgroups(cgroup_root: str, timeout: float = 15.0) -> None:
    """Kill what is left in the pods' cgroups (container processes outlive their
    shims for a moment) and remove every cgroup under ``cgroup_root``, deepest first."""
    deadline = time.monotonic() + timeout
    while True:
        left = False
        for controller in Path("/sys/fs/cgroup").iterdir():
            root = controller / cgroup_root.lstrip("/")
            if not root.is_dir():
                continue
            subs = sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True)
            for sub in [*(p for p in subs if p.is_dir()), root]:
                with contextlib.suppress(OSError, ValueError):
                    for pid in (sub / "cgroup.procs").read_text().split():
                        os.kill(int(pid), signal.SIGKILL)
                with contextlib.suppress(OSError):
                    sub.rmdir()
            left = left or root.exists()
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.2)  # processes just killed are still being reaped


def make_cgroup_root(cgroup_root: str) -> None:
    """kubelet's cgroupRoot must exist in every v1 hierarchy (cpuset initialised)."""
    for controller in Path("/sys/fs/cgroup").iterdir():
        if controller.name == "unified" or not (controller / "cgroup.procs").exists():
            continue
        root = controller / cgroup_root.lstrip("/")
        root.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (root / knob).exists() and not (root / knob).read_text().strip():
                (root / knob).write_text((controller / knob).read_text())
