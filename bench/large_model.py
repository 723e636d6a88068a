"""Benchmark: peak resident memory of a build whose model source is gigabytes.

Generates a model source of ``--gib`` GiB on disk (incompressible bytes, like float
weights), serves it over HTTP on 127.0.0.1, starts its own TLS registry with the
linux/amd64 Debian base image, then builds the model in a **child process** with the
operator's builder (download streamed to disk with the hash computed on the way, the
model layer gzip'd file to file, uploaded in chunks). The child reports its own peak
RSS (``VmHWM`` of its address space), its RSS before the build, and the wall time of
each phase. Not ``ru_maxrss``: Linux carries the high-water mark of the address space
a process had *before* ``exec`` into it, and Python spawns children with ``vfork``, so
a child of a 700 MB pytest process "peaks" at 700 MB before running a line.
The operator's memory limit in the chart is 2 GiB.

    .venv/bin/python bench/large_model.py [--gib 1.0] [--keep-under /path]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["measure"]

_CHUNK = 8 * 1024 * 1024


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _child(args: dict[str, Any]) -> None:
    """Runs in the child: one build, one JSON line of results on stdout."""
    import httpx

    from edgefleet.api.inferencemodel import InferenceModelSpec
    from edgefleet.clients.imagebuilder import BuilderSettings, ImageBuilder
    from edgefleet.clients.registry import RegistryClient
    from edgefleet.domain import signing

    before = _status_kib("VmRSS")
    settings = BuilderSettings(
        cache_dir=Path(args["cache"]),
        base_repository="edgefleet/base",
        base_reference="bookworm",
        max_model_bytes=8 * 1024**3,
    )
    spec = InferenceModelSpec.model_validate(
        {
            "version": "1.0.0",
            "platforms": ["linux/amd64"],
            "source": {"url": {"url": args["url"], "sha256": args["sha256"]}},
        }
    )
    steps: list[tuple[float, str, int]] = []
    start = time.monotonic()

    def step(message: str) -> None:
        peak = _status_kib("VmHWM")
        steps.append((time.monotonic() - start, message, peak))

    with (
        RegistryClient(args["registry"], ca_bundle=args["ca"]) as registry,
        httpx.Client(timeout=120) as http,
    ):
        builder = ImageBuilder(registry, signing.generate_key(), settings, http=http)
        result = builder.build("bench", "large", spec, progress=step)
    print(
        json.dumps(
            {
                "rss_before_kib": before,
                "peak_kib": _status_kib("VmHWM"),
                "seconds": time.monotonic() - start,
                "bytes_uploaded": result.bytes_uploaded,
                "model_layer_bytes": result.images[0].model_layer_bytes,
                "steps": steps,
            }
        )
    )


def _generate(path: Path, size: int) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(_CHUNK, left))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def measure(size: int, work: Path) -> dict[str, Any]:
    """Build a ``size``-byte model in a child process; peak RSS and timings."""
    from edgefleet.clients import baseimage
    from edgefleet.clients.registry import RegistryClient
    from edgefleet.testing.files import file_server
    from edgefleet.testing.registry import LocalRegistry

    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    sha = _generate(models / "large.onnx", size)
    generate_s = time.monotonic() - started
    cache = work / "cache"
    cache.mkdir(exist_ok=True)
    shared = Path.home() / ".cache" / "edgefleet" / "test-builder"
    for sub in ("wheels", "runtime-layers"):
        (shared / sub).mkdir(parents=True, exist_ok=True)
        if not (cache / sub).exists():
            (cache / sub).symlink_to(shared / sub)
    # The runtime layer (onnxruntime + numpy, per platform) is built once and cached;
    # its cold build holds the unpacked wheels in memory (~250 MiB peak) and is not what
    # this measures: build it here, outside the child.
    from edgefleet.clients.runtimecache import RuntimeLayerCache
    from edgefleet.domain.runtime_pins import require_runtime

    RuntimeLayerCache(cache).layer(require_runtime("linux/amd64"))
    with LocalRegistry(storage_dir=work / "registry") as registry, file_server(models) as url:
        with RegistryClient(registry.url, ca_bundle=registry.ca_path) as client:
            baseimage.push_base_index(client, "edgefleet/base", ("amd64",), tag="bookworm")
        args = {
            "cache": str(cache),
            "url": f"{url}/large.onnx",
            "sha256": sha,
            "registry": registry.url,
            "ca": str(registry.ca_path),
        }
        out_path, err_path = work / "child.out", work / "child.err"
        with out_path.open("w") as out, err_path.open("w") as err:
            returncode = subprocess.call(
                [sys.executable, __file__, "--child", json.dumps(args)], stdout=out, stderr=err
            )
        stdout, stderr = out_path.read_text(), err_path.read_text()
    if returncode != 0:
        raise RuntimeError(f"build child failed ({returncode}):\n{stderr[-4000:]}")
    child = json.loads(stdout.strip().splitlines()[-1])
    return {
        "model_bytes": size,
        "generate_seconds": generate_s,
        "peak_rss_bytes": child["peak_kib"] * 1024,
        "rss_before_build_bytes": child["rss_before_kib"] * 1024,
        "build_seconds": child["seconds"],
        "bytes_uploaded": child["bytes_uploaded"],
        "model_layer_bytes": child["model_layer_bytes"],
        "steps": child["steps"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--keep-under", type=Path, help="work directory (kept); else a temp dir")
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return 0
    work = args.keep_under or Path(tempfile.mkdtemp(prefix="edgefleet-large-"))
    try:
        result = measure(int(args.gib * 1024**3), work)
    finally:
        if args.keep_under is None:
            shutil.rmtree(work, ignore_errors=True)
    mib = 1024**2
    print(f"| model source | {result['model_bytes'] / mib:.0f} MiB |")
    print(f"| peak RSS of the build process | {result['peak_rss_bytes'] / mib:.0f} MiB |")
    before = result["rss_before_build_bytes"] / mib
    print(f"| RSS before the build (imports, clients) | {before:.0f} MiB |")
    print(f"| build time (download, layer, push, sign) | {result['build_seconds']:.0f} s |")
    print(f"| bytes uploaded | {result['bytes_uploaded'] / mib:.0f} MiB |")
    for at, step, peak_kib in result["steps"]:
        print(f"|   {at:6.1f} s, peak so far {peak_kib / 1024:.0f} MiB | {step[:80]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
