"""Benchmark of the edge-node agent's image, built by the daemonless app-image builder.

Measures, for linux/amd64 and linux/arm64:

- compressed size per platform (base layer + locked wheels + agent sources), and the
  size the Docker engine reports after a pull (uncompressed);
- build time with a cold wheel cache (pip downloads the locked wheels; pip's own HTTP
  cache may hold them) and warm (new repository; and again with nothing to push);
- digest reproducibility: a second, independent cold cache gives the same digests.

Starts its own TLS registry on 127.0.0.1 and uses the cached base rootfs. With a
Docker engine (``--engine``) it also pulls each platform and reads the engine's size.
Prints a Markdown table.

    .venv/bin/python bench/node_image.py [--engine]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from edgefleet.clients import appbuilder, baseimage, edgefleetimages
from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import signing
from edgefleet.testing import engine
from edgefleet.testing.registry import LocalRegistry

PLATFORMS = ("linux/amd64", "linux/arm64")
Row = tuple[str, str, str]


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _engine_sizes(reg: LocalRegistry, result: appbuilder.AppBuildResult) -> list[Row]:
    eng = engine.ensure_engine()
    certs = Path("/etc/docker/certs.d") / reg.host
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copy(reg.ca_path, certs / "ca.crt")
    rows: list[Row] = []
    reference = f"{result.repository}@{result.index_digest}"
    try:
        for platform in PLATFORMS:
            eng.docker("pull", "--platform", platform, reference, timeout=600)
            size = eng.docker("image", "inspect", "--format", "{{.Size}}", reference).stdout
            rows.append((f"agent image {platform}, in the engine (uncompressed)",
                         _mb(int(size.decode())), "—"))  # fmt: skip
            eng.remove_image(reference)
    finally:
        shutil.rmtree(certs, ignore_errors=True)
    return rows


def run(with_engine: bool) -> list[Row]:
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="edgefleet-bench-node-"))
    key = signing.generate_key()
    try:
        with LocalRegistry() as reg, RegistryClient(reg.url, ca_bundle=reg.ca_path) as client:
            baseimage.push_base_index(client, "edgefleet/base", ["amd64", "arm64"], tag="bookworm")

            def build(cache: str, repo: str) -> appbuilder.AppBuildResult:
                builder = appbuilder.AppImageBuilder(client, key, work / cache)
                return edgefleetimages.build_node_image(
                    builder, repo, PLATFORMS, progress=print_err
                )

            cold = build("cache-a", "edgefleet/node-cold")
            cold_b = build("cache-b", "edgefleet/node-cold-b")
            warm = build("cache-a", "edgefleet/node-warm")
            noop = build("cache-a", "edgefleet/node-warm")
            for image in cold.images:
                rows.append(
                    (
                        f"agent image {image.platform}, compressed (base + wheels + agent)",
                        _mb(image.size_bytes),
                        f"wheels {_mb(image.site_packages_bytes)}, agent "
                        f"{image.app_bytes / 1e3:.0f} kB",
                    )
                )
            rows += [
                ("build both platforms, cold wheel cache (pip download, all pushed)",
                 f"{cold.seconds:.1f} s", "—"),
                ("build both platforms, warm cache, new repository", f"{warm.seconds:.1f} s",
                 f"cold: {cold.seconds:.1f} s"),
                ("build both platforms, warm cache, nothing to push", f"{noop.seconds:.1f} s",
                 f"cold: {cold.seconds:.1f} s"),
                ("digests from two independent cold caches",
                 "identical" if [i.digest for i in cold.images] == [i.digest for i in cold_b.images]
                 and cold.index_digest == cold_b.index_digest else "DIFFERENT", "identical"),
                ("bytes pushed by the no-op rebuild", f"{noop.bytes_uploaded} B", "0 B"),
            ]  # fmt: skip
            if with_engine:
                rows += _engine_sizes(reg, cold)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def print_err(message: str) -> None:
    print(f"  {message}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", action="store_true", help="also pull into the Docker engine")
    args = parser.parse_args()
    rows = run(args.engine)
    print("| measure | value | baseline / notes |\n| --- | --- | --- |")
    for row in rows:
        print(f"| {' | '.join(row)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
