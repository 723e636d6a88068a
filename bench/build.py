"""Benchmark of the daemonless image builder against a real local registry.

Measures, for a ~20 MB ONNX model and the platforms linux/amd64 and linux/arm64:

- build time per platform with a cold builder cache (wheels downloaded from PyPI,
  runtime layer built) and with a warm one (into a fresh repository, and again with
  nothing left to push);
- digest reproducibility: a second, independent cold cache gives the same digests;
- bytes pushed by a weights-only update, divided by the compressed model layer (goal
  ≤ 1.05), against a full re-push of the image as the baseline;
- ECDSA P-256 sign and verify time (cosign format), in process and with the push.

Starts its own registry (Debian's docker-registry, TLS) on 127.0.0.1, and uses the
cached base rootfs (built on first use: minutes). Prints a Markdown table.

    .venv/bin/python bench/build.py [--model-mb 20] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from edgefleet.api.inferencemodel import InferenceModelSpec
from edgefleet.clients import baseimage
from edgefleet.clients.imagebuilder import BuilderSettings, BuildResult, ImageBuilder
from edgefleet.clients.registry import RegistryClient
from edgefleet.clients.signer import sign_and_push
from edgefleet.domain import signing
from edgefleet.testing.files import file_server
from edgefleet.testing.models import ModelFixture, make_mlp
from edgefleet.testing.registry import LocalRegistry
from edgefleet_node.trust import cosign

PLATFORMS = ("linux/amd64", "linux/arm64")
SECTION_INTRO = """\
`bench/build.py` starts its own TLS registry, pushes the multi-arch Debian base index
from the cached root filesystems, builds a ~20 MB ONNX model for linux/amd64 and
linux/arm64 with the daemonless builder, then updates only the weights. "Cold cache"
is an empty builder cache: the platform wheels are fetched by pip (pip's own HTTP
cache may already hold them) and the runtime layer is unpacked and compressed; base
layers are cross-repository mounts. The int8 rows quantise the same model for
linux/amd64 and measure it on its probe input on this host. The signature rows sign
and verify cosign-format documents in process (200 runs) and push signatures to the
registry (10 runs).

"""
Row = tuple[str, str, str]


def _spec(url: str, sha: str, version: str) -> InferenceModelSpec:
    return InferenceModelSpec.model_validate(
        {
            "version": version,
            "platforms": list(PLATFORMS),
            "source": {"url": {"url": url, "sha256": sha}},
        }
    )


def _per_platform(result: BuildResult) -> dict[str, float]:
    return {i.platform: i.build_seconds for i in result.images}


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def run(model_mb: float) -> list[Row]:
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="edgefleet-bench-"))
    key = signing.generate_key()
    try:
        with (
            LocalRegistry() as reg,
            RegistryClient(reg.url, ca_bundle=reg.ca_path) as client,
            httpx.Client(timeout=60) as http,
            file_server(work) as base_url,
        ):
            t0 = time.monotonic()
            baseimage.push_base_index(
                client,
                "edgefleet/base",
                ["amd64", "arm64"],
                tag="bookworm",
                progress=lambda m: print(f"  {m}", file=sys.stderr),
            )
            print(f"base index pushed in {time.monotonic() - t0:.1f}s", file=sys.stderr)
            old = make_mlp(work / "v1.onnx", target_bytes=int(model_mb * 1e6), seed=1)
            new = make_mlp(work / "v2.onnx", target_bytes=int(model_mb * 1e6), seed=2)
            v1 = _spec(f"{base_url}/v1.onnx", old.sha256, "1.0.0")
            v2 = _spec(f"{base_url}/v2.onnx", new.sha256, "1.0.1")

            def builder(cache: Path) -> ImageBuilder:
                return ImageBuilder(client, key, BuilderSettings(cache_dir=cache), http=http)

            cold = builder(work / "cache-a").build("bench", "cold", v1)
            cold_b = builder(work / "cache-b").build("bench", "cold", v1)
            warm_builder = builder(work / "cache-a")
            warm = warm_builder.build("bench", "warm", v1)
            noop = warm_builder.build("bench", "warm", v1)
            update = warm_builder.build("bench", "warm", v2)

            for platform in PLATFORMS:
                rows.append(
                    (
                        f"build {platform}, cold cache (wheels from PyPI, runtime layer "
                        "built, all pushed)",
                        f"{_per_platform(cold)[platform]:.1f} s",
                        "—",
                    )
                )
            for platform in PLATFORMS:
                rows.append(
                    (
                        f"build {platform}, warm cache, new repository",
                        f"{_per_platform(warm)[platform]:.1f} s",
                        f"cold: {_per_platform(cold)[platform]:.1f} s",
                    )
                )
            for platform in PLATFORMS:
                rows.append(
                    (
                        f"build {platform}, warm cache, nothing to push",
                        f"{_per_platform(noop)[platform]:.1f} s",
                        f"cold: {_per_platform(cold)[platform]:.1f} s",
                    )
                )
            same = [i.digest for i in cold.images] == [
                i.digest for i in cold_b.images
            ] and cold.index_digest == cold_b.index_digest
            rows.append(
                (
                    "digests from two independent cold caches",
                    "identical" if same else "DIFFERENT",
                    "identical",
                )
            )
            rows.append(("bytes pushed by the no-op rebuild", f"{noop.bytes_uploaded} B", "0 B"))
            model_layer = update.images[0].model_layer_bytes
            full = sum(i.size_bytes for i in update.images)
            rows.append(("compressed model layer (weights)", _mb(model_layer), "—"))
            rows.append(
                (
                    "bytes pushed by the weights-only update (all blobs + manifests + signatures)",
                    _mb(update.bytes_uploaded),
                    f"full re-push of both images: {_mb(full)}",
                )
            )
            rows.append(
                (
                    "  ÷ compressed model layer",
                    f"{update.bytes_uploaded / model_layer:.3f}",
                    f"goal ≤ 1.05; full re-push: {full / model_layer:.2f}",
                )
            )
            rows += _quantised(warm_builder, old, f"{base_url}/v1.onnx")
            rows += _sign_verify(client, key, cold)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _quantised(builder: ImageBuilder, model: ModelFixture, url: str) -> list[Row]:
    spec = InferenceModelSpec.model_validate(
        {
            "version": "1.0.0-int8",
            "platforms": ["linux/amd64"],
            "source": {"url": {"url": url, "sha256": model.sha256}},
            "optimizations": [{"platforms": ["linux/amd64"], "quantization": "Int8Dynamic"}],
            "probe": model.probe_spec(tolerance=0.05),
        }
    )
    start = time.monotonic()
    image = builder.build("bench", "int8", spec).images[0]
    seconds = time.monotonic() - start
    opt = image.optimized
    assert opt is not None
    return [
        (
            "int8 dynamic quantisation, linux/amd64: model file",
            _mb(len(opt.weights)),
            f"float32: {_mb(opt.original_bytes)}",
        ),
        (
            "  largest error on the probe input (vs float32 model)",
            f"{opt.probe_max_abs_error:.4f}",
            "probe tolerance 0.05",
        ),
        (
            "  probe latency, int8 ÷ float32 (build host, 1 thread)",
            f"{opt.latency_ratio:.2f}",
            "1.00",
        ),
        ("  build incl. quantisation and probe runs", f"{seconds:.1f} s", "—"),
    ]


def _sign_verify(client: RegistryClient, key: object, built: BuildResult) -> list[Row]:
    assert isinstance(key, signing.ec.EllipticCurvePrivateKey)
    payload = signing.build_payload("127.0.0.1:5000/edgefleet/models/x", built.index_digest)
    signs, verifies = [], []
    public = signing.public_key_pem(key)
    for _ in range(200):
        t = time.perf_counter()
        sig = signing.sign_payload(key, payload)
        signs.append(time.perf_counter() - t)
        layer = signing.signature_layer(payload, sig)
        image = signing.signature_image([layer])
        t = time.perf_counter()
        cosign.verify_signatures(
            image.manifest.data,
            {layer.digest: payload},
            built.index_digest,
            public,
            expected_reference="127.0.0.1:5000/edgefleet/models/x",
        )
        verifies.append(time.perf_counter() - t)
    repo = built.repository.split("/", 1)[1]
    pushes = []
    for image in built.images:
        for _ in range(5):
            t = time.perf_counter()
            sign_and_push(client, repo, image.digest, key, optional={"run": str(time.time_ns())})
            pushes.append(time.perf_counter() - t)
    return [
        (
            "sign one digest (ECDSA P-256, in process), median",
            f"{statistics.median(signs) * 1e3:.2f} ms",
            "—",
        ),
        (
            "verify one signature manifest (agent-side verifier), median",
            f"{statistics.median(verifies) * 1e3:.2f} ms",
            "—",
        ),
        (
            "sign + push signature manifest to the registry, median",
            f"{statistics.median(pushes) * 1e3:.1f} ms",
            "—",
        ),
    ]


def render(rows: list[Row], command: str) -> str:
    lines = ["| measure | value | baseline / goal |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + f"\n\nMade by `{command}`.\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-mb", type=float, default=20.0)
    parser.add_argument("--out", type=Path, help="replace the build section of this Markdown file")
    args = parser.parse_args()
    command = "bench/build.py" + (f" --model-mb {args.model_mb:g}" if args.model_mb != 20 else "")
    table = render(run(args.model_mb), ".venv/bin/python " + command)
    print(table)
    if args.out:
        _replace_section(args.out, "## Image builds", SECTION_INTRO + table)
    return 0


def _replace_section(path: Path, heading: str, body: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(heading)
    section = f"{heading}\n\n{body}"
    if start < 0:
        text = text.rstrip() + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
