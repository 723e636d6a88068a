"""The GitOps e2e world: a working copy of the fleet repository that Flux syncs, the
model weights of each version, the devices, and waits that record when each step of
a deploy (Flux sync, build, rollout, Flux's verdict) was first seen."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client

from edgefleet.testing.flux import Flux
from edgefleet.testing.gitserver import GitServer, git
from edgefleet.testing.procs import wait_until
from tests.e2e.gitops_devices import Devices
from tests.unit.test_argocd_health import health as argocd_health

__all__ = ["FLEET", "PLATFORMS", "GitOps", "argocd_health", "commit", "model_doc"]


def model_doc(
    name: str, version: str, url: str, sha: str, platforms: tuple[str, ...] = ("linux/amd64",)
) -> dict[str, Any]:
    return {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "platforms": list(platforms),
            "source": {"url": {"url": url, "sha256": sha}},
        },
    }


def commit(work: Path, message: str, files: dict[str, dict[str, Any]]) -> str:
    for rel, doc in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(yaml.safe_dump(doc))
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", message)
    git(work, "push", "--quiet", "origin", "main")
    return git(work, "rev-parse", "HEAD")


PLATFORMS = ("linux/amd64", "linux/arm64")
FLEET = ["linux/amd64"] * 3 + ["linux/arm64"] * 2  # a canary of 40% is two devices


class GitOps:
    """One Git repository synced by Flux into ``namespace``, the model weights of each
    version, the devices, and the timings of each deploy."""

    def __init__(
        self, crds: Any, namespace: str, operator: Any, flux: Flux, fleet: Devices,
        server: GitServer, work: Path, sync: str,
    ) -> None:  # fmt: skip
        self.crds, self.ns, self.operator, self.flux = crds, namespace, operator, flux
        self.devices, self.work, self.sync = fleet, work, sync
        self.repo_url = f"{server.base_url}/fleet.git"
        self.api = client.CustomObjectsApi(fleet.fleet.api)
        self.weights: dict[str, tuple[str, str]] = {}
        self.timings: dict[str, float] = {}

    def get(self, plural: str) -> dict[str, Any]:
        try:
            obj = cast(dict[str, Any], self.api.get_namespaced_custom_object(
                "edgefleet.io", "v1alpha1", self.ns, plural, "detector"
            ))  # fmt: skip
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            return {"metadata": {}, "spec": {}}
        return obj

    def commit(self, version: str) -> str:
        return commit(self.work, f"detector {version}", {
            "fleet/kustomization.yaml": {"resources": ["model.yaml", "rollout.yaml"]},
            "fleet/model.yaml": model_doc("detector", version, *self.weights[version],
                                           platforms=PLATFORMS),
            "fleet/rollout.yaml": _rollout_doc(version),
        })  # fmt: skip

    def revert(self) -> str:
        git(self.work, "revert", "--no-edit", "HEAD")
        git(self.work, "push", "--quiet", "origin", "main")
        return git(self.work, "rev-parse", "HEAD")

    def digests(self, version: str) -> dict[str, str] | None:
        """The per-platform digests of ``version`` once the model is built and signed."""
        model = self.get("inferencemodels")
        status = model.get("status") or {}
        built = (
            model["spec"].get("version") == version
            and status.get("observedGeneration") == model["metadata"].get("generation")
            and _condition(model, "Ready") == "True"
        )
        return {i["platform"]: i["digest"] for i in status.get("images", [])} if built else None

    def rollout_done(self, version: str) -> bool:
        ro = self.get("rollouts")
        status = ro.get("status") or {}
        return (
            status.get("observedGeneration") == ro["metadata"].get("generation")
            and (status.get("target") or {}).get("version") == version
            and status.get("phase") == "Completed"
        )

    def deployed(
        self, revision: str, version: str, started: float, label: str, *, canary: bool = True
    ) -> None:
        """Wait until ``revision`` is on every device and Flux calls it healthy; record
        when each step was first seen. Flux must never be healthy before the devices.
        ``canary``: every device gets a new document, two of them first."""
        marks: dict[str, float] = {}
        digests: dict[str, str] | None = None
        polls: list[float] = []

        def check() -> bool:
            nonlocal digests

            def mark(step: str) -> None:
                marks.setdefault(step, time.monotonic() - started)

            self.flux.check_alive()
            status, _, _, applied = self.flux.ready(self.sync)
            if self.get("rollouts")["spec"].get("model", {}).get("version") == version:
                mark("flux: commit applied")
            digests = digests or self.digests(version)
            if digests is not None:
                mark("build: model built and signed")
            if all(s.holds() == version for s in self.devices.sims):
                mark("rollout: every device holds the signed document")
            on = digests is not None and self.devices.on(version, digests)
            if on:
                mark("rollout: every device runs it (EdgeDevice Healthy, Ready)")
            done = on and self.rollout_done(version)
            if done:
                mark("rollout: Rollout Completed")
            healthy = status == "True" and revision in applied
            if healthy:
                assert done, "Flux called the sync healthy before every device ran the version"
                mark("flux: Kustomization Ready (wait: true)")
            polls.append(time.monotonic())
            return healthy

        wait_until(check, timeout=420, interval=0.5, what=f"{label} deployed",
                   alive=self.operator.service.check_alive)  # fmt: skip
        # The canary: two devices got the version first; the other three only after
        # those two had been healthy for minHealthyDuration (2 s, read at 1 s steps).
        # Argo CD's verdict, from our Lua health checks on the same objects, agrees.
        objects = [self.get("rollouts"), self.get("inferencemodels"), *self.devices.edgedevices()]
        assert _argocd(objects) == {"Healthy"}, [argocd_health(o) for o in objects]
        if canary:
            got = sorted(s.offered_since(version, started) or 0.0 for s in self.devices.sims)
            assert got[2] - got[1] >= 0.9, ("no canary wave", got)
        for key, value in sorted(marks.items(), key=lambda kv: kv[1]):
            self.timings[f"{label}: {key}"] = value
        gaps = [b - a for a, b in itertools.pairwise(polls)] or [0.0]
        self.timings[f"{label}: (longest gap between polls)"] = max(gaps)


def _rollout_doc(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "detector"},
        "spec": {
            "model": {"name": "detector", "version": version},
            "selector": {"matchLabels": {"site": "berlin"}},
            "canary": {"steps": [{"setWeight": 40}]},
            "healthGate": {"minHealthyDuration": "2s"},
            "maxUnavailable": "100%",
        },
    }


def _argocd(objects: list[dict[str, Any]]) -> set[str]:
    return {argocd_health(o)[0] for o in objects}


def _condition(obj: dict[str, Any], type_: str) -> str:
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((c["status"] for c in conds if c["type"] == type_), "Unknown")
