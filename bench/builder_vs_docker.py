"""Our daemonless builder beside `docker build` of the same image, in one run.

Both build a linux/amd64 model image from the same inputs: the Debian base image (pushed
to a local TLS registry from the cached rootfs), the same locked runtime wheels and
inference server (the files of our runtime layer, laid out in the Docker build context)
and the same ~20 MB ONNX model; Docker with a Dockerfile (`FROM` the base by digest,
`COPY` runtime, `COPY` model) on the same Docker engine, pushing to the same registry.
Measured: cold build+push (empty build caches; wheels already on disk for both), warm
rebuild+push into a new repository, and the bytes a weights-only update adds to the
registry's storage (counted on the registry's disk, the same way for both).

    .venv/bin/python bench/builder_vs_docker.py [--model-mb 20]
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

import httpx

from edgefleet.api.inferencemodel import InferenceModelSpec
from edgefleet.clients import baseimage, wheels
from edgefleet.clients.imagebuilder import BuilderSettings, ImageBuilder
from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import signing
from edgefleet.domain.modelimage import MODEL_PATH
from edgefleet.domain.runtime_layer import RUNTIME_CMD, RUNTIME_ENV
from edgefleet.testing.agentcontainers import trusted_registry
from edgefleet.testing.engine import ensure_engine
from edgefleet.testing.files import file_server
from edgefleet.testing.models import make_mlp
from edgefleet.testing.registry import LocalRegistry


def _storage_bytes(registry: LocalRegistry) -> int:
    blobs = registry.storage_dir / "docker" / "registry" / "v2" / "blobs"
    return sum(p.stat().st_size for p in blobs.rglob("data")) if blobs.exists() else 0


def _spec(url: str, sha: str) -> InferenceModelSpec:
    return InferenceModelSpec.model_validate(
        {"version": "1.0.0", "platforms": ["linux/amd64"],
         "source": {"url": {"url": url, "sha256": sha}}}
    )  # fmt: skip


def _context(work: Path, base_ref: str, wheel_cache: Path) -> Path:
    ctx = work / "docker-context"
    root = ctx / "runtime"
    for entry in wheels.runtime_layer_entries("linux/amd64", wheel_cache):
        target = root / entry.path
        if entry.directory:
            target.mkdir(parents=True, exist_ok=True)
        elif entry.symlink is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(entry.symlink)
        else:
            assert entry.data is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(entry.data)
            target.chmod(entry.mode or 0o644)
    env = " ".join(f'{k}="{v}"' for k, v in RUNTIME_ENV)
    cmd = ", ".join(f'"{part}"' for part in RUNTIME_CMD)
    (ctx / "Dockerfile").write_text(
        f"FROM {base_ref}\n"
        "COPY runtime/ /\n"
        f"COPY model.onnx /{MODEL_PATH}\n"
        f"ENV {env} EDGEFLEET_MODEL_PATH=/{MODEL_PATH}\n"
        "USER 65534\n"
        f"CMD [{cmd}]\n"
    )
    return ctx


def _docker(engine, *args: str, timeout: float = 1800) -> None:
    done = subprocess.run([engine.client, *args], capture_output=True, text=True,
                          timeout=timeout, check=False,
                          env={**os.environ, "DOCKER_BUILDKIT": "0"})  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-mb", type=float, default=20)
    args = parser.parse_args()
    engine = ensure_engine()
    work = Path(tempfile.mkdtemp(prefix="edgefleet-bvd-"))
    rows: list[tuple[str, str, str]] = []
    try:
        with (
            LocalRegistry() as reg,
            RegistryClient(reg.url, ca_bundle=reg.ca_path) as client,
            httpx.Client(timeout=60) as http,
            file_server(work) as base_url,
            trusted_registry(reg),
        ):
            index = baseimage.push_base_index(client, "edgefleet/base", ["amd64"], tag="bookworm")
            data, _, _ = client.get_manifest("edgefleet/base", index)
            amd64 = json.loads(data)["manifests"][0]["digest"]
            base_ref = f"{reg.host}/edgefleet/base@{amd64}"
            v1 = make_mlp(work / "v1.onnx", target_bytes=int(args.model_mb * 1e6), seed=1)
            v2 = make_mlp(work / "v2.onnx", target_bytes=int(args.model_mb * 1e6), seed=2)
            shared_wheels = work / "wheels"
            wheels.fetch_wheels("linux/amd64", shared_wheels)
            key = signing.generate_key()

            def ours(cache: Path, repo: str, model, name: str) -> tuple[float, int]:
                if not (cache / "wheels").exists():
                    shutil.copytree(shared_wheels, cache / "wheels", symlinks=True)
                builder = ImageBuilder(client, key, BuilderSettings(cache_dir=cache), http=http)
                before, start = _storage_bytes(reg), time.monotonic()
                builder.build("bench", repo, _spec(f"{base_url}/{name}", model.sha256))
                return time.monotonic() - start, _storage_bytes(reg) - before

            ours_cold = ours(work / "cache", "ours", v1, "v1.onnx")
            ours_warm = ours(work / "cache", "ours-warm", v1, "v1.onnx")
            ours_update = ours(work / "cache", "ours", v2, "v2.onnx")

            ctx = _context(work, base_ref, shared_wheels)

            def docker(repo: str, model_file: Path, cold: bool) -> tuple[float, int]:
                shutil.copy(model_file, ctx / "model.onnx")
                ref = f"{reg.host}/edgefleet/docker-{repo}:latest"
                if cold:
                    _docker(engine, "builder", "prune", "-af")
                    subprocess.run([engine.client, "image", "rm", "-f", base_ref],
                                   capture_output=True, check=False)  # fmt: skip
                before, start = _storage_bytes(reg), time.monotonic()
                _docker(engine, "build", "-t", ref, str(ctx))
                _docker(engine, "push", ref)
                took = time.monotonic() - start
                subprocess.run([engine.client, "image", "rm", "-f", ref], capture_output=True,
                               check=False)  # fmt: skip
                return took, _storage_bytes(reg) - before

            docker_cold = docker("a", work / "v1.onnx", cold=True)
            docker_warm = docker("b", work / "v1.onnx", cold=False)
            docker_update = docker("a", work / "v2.onnx", cold=False)
            _docker(engine, "builder", "prune", "-af")
            subprocess.run([engine.client, "image", "rm", "-f", base_ref], capture_output=True,
                           check=False)  # fmt: skip
            mb = 1e6
            rows += [
                ("cold build + push (s)", f"{ours_cold[0]:.1f}", f"{docker_cold[0]:.1f}"),
                ("warm rebuild + push, new repository (s)", f"{ours_warm[0]:.1f}",
                 f"{docker_warm[0]:.1f}"),
                ("weights-only update, build + push (s)", f"{ours_update[0]:.1f}",
                 f"{docker_update[0]:.1f}"),
                ("registry bytes added by the cold push (MB)", f"{ours_cold[1] / mb:.1f}",
                 f"{docker_cold[1] / mb:.1f}"),
                ("registry bytes added by the weights-only update (MB)",
                 f"{ours_update[1] / mb:.2f}", f"{docker_update[1] / mb:.2f}"),
            ]  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"| linux/amd64, ~{args.model_mb:g} MB model | our builder | docker build (engine 20.10) |"
    )
    print("| --- | ---: | ---: |")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
