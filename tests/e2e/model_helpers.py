"""Helpers for the InferenceModel e2e tests that give the operator a registry of the
test's own (to delete from it or stop it without harming other tests): that registry
with the base image, an ONNX model's InferenceModel, and reads of the API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgefleet.clients import baseimage
from edgefleet.clients.registry import RegistryClient
from edgefleet.testing.models import make_mlp
from edgefleet.testing.registry import LocalRegistry
from tests.conftest import BASE_REPO, BASE_TAG

__all__ = ["conditions", "get_model", "mlp_model", "own_registry"]


@contextmanager
def own_registry(operator_env: dict[str, str]) -> Iterator[tuple[LocalRegistry, dict[str, str]]]:
    """A fresh registry holding the amd64 base index, and ``operator_env`` pointed at it."""
    with LocalRegistry() as own:
        with RegistryClient(own.url, ca_bundle=own.ca_path) as client:
            baseimage.push_base_index(client, BASE_REPO, ("amd64",), tag=BASE_TAG)
        yield (
            own,
            operator_env
            | {
                "EDGEFLEET_REGISTRY_URL": own.url,
                "EDGEFLEET_REGISTRY_CA": str(own.ca_path),
            },
        )


def mlp_model(
    model_files: tuple[Path, str], namespace: str, name: str, weights: str, seed: int
) -> dict[str, Any]:
    """An InferenceModel ``namespace/name`` (1.0.0, linux/amd64) of a fresh 32 KiB MLP,
    served by ``model_files`` as ``weights``."""
    directory, base_url = model_files
    fixture = make_mlp(directory / weights, target_bytes=32 * 1024, seed=seed)
    return {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "version": "1.0.0",
            "platforms": ["linux/amd64"],
            "source": {"url": {"url": f"{base_url}/{weights}", "sha256": fixture.sha256}},
        },
    }


def get_model(cp: Any, ns: str, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        cp.kubectl("get", "inferencemodels.edgefleet.io", name, "-n", ns, "-o", "json").stdout
    )
    return doc


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The object's status conditions by type."""
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
