"""Git commit → deploy through Flux: a commit that adds or bumps an InferenceModel is
synced by Flux's own controllers and built and signed by the operator, and Flux's
health verdict (``Kustomization`` with ``wait: true``, judged by kstatus) reads our
kinds right: Ready only once the model is built; failed when the model is stalled;
healthy again after ``git revert``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import yaml

from edgefleet.testing.flux import Flux
from edgefleet.testing.gitserver import GitServer, git
from edgefleet.testing.models import make_mlp
from edgefleet.testing.procs import wait_until


@pytest.fixture(scope="module")
def flux(crds) -> Iterator[Flux]:
    with Flux(crds) as f:
        yield f


def _model_doc(name: str, version: str, url: str, sha: str) -> dict:
    return {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "platforms": ["linux/amd64"],
            "source": {"url": {"url": url, "sha256": sha}},
        },
    }


def _commit(work, message: str, files: dict[str, dict]) -> str:
    for rel, doc in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(yaml.safe_dump(doc))
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", message)
    git(work, "push", "--quiet", "origin", "main")
    return git(work, "rev-parse", "HEAD")


def _model_ready(cp, ns: str, name: str) -> str:
    out = cp.kubectl(
        "get", "inferencemodels.edgefleet.io", name, "-n", ns, "-o", "json", check=False
    )
    if out.returncode != 0:
        return "Absent"
    conditions = (json.loads(out.stdout).get("status") or {}).get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "Unknown")


def test_commit_deploys_and_flux_judges_health(
    crds, namespace, operator, flux, model_files, tmp_path, unique
):
    directory, base_url = model_files
    fixture = make_mlp(directory / f"gitops-{unique}.onnx", target_bytes=32 * 1024, seed=7)
    url = f"{base_url}/gitops-{unique}.onnx"
    name, sync = "detector", f"fleet-{unique}"
    with GitServer() as server:
        repo_url = server.create("fleet")
        work = server.clone("fleet", tmp_path / "work")
        first = _commit(work, "detector 1.0.0", {
            "fleet/kustomization.yaml": {"resources": ["model.yaml"]},
            "fleet/model.yaml": _model_doc(name, "1.0.0", url, fixture.sha256),
        })  # fmt: skip
        flux.apply_sync(sync, repo_url, "./fleet", namespace, timeout="3m")

        # Flux applies the commit; while the operator builds, the Kustomization is not
        # Ready (kstatus: InProgress); it becomes Ready only after the model is. Checked
        # on every poll, and by the transition times the API server recorded (a warm
        # build can finish between two polls).
        def synced_ready() -> bool:
            flux.check_alive()
            status, _, _, revision = flux.ready(sync)
            if status == "True":
                assert _model_ready(crds, namespace, name) == "True", (
                    "Flux called the sync healthy before the model was"
                )
            return status == "True" and first in revision

        wait_until(synced_ready, timeout=240, interval=0.5, what="Flux sync of the first commit",
                   alive=operator.service.check_alive)  # fmt: skip
        stored = crds.kubectl(
            "get", "inferencemodels.edgefleet.io", name, "-n", namespace, "-o", "json"
        ).stdout
        model_ready_at = next(
            c["lastTransitionTime"]
            for c in json.loads(stored)["status"]["conditions"]
            if c["type"] == "Ready"
        )
        flux_ready_at = next(
            c["lastTransitionTime"]
            for c in flux.kustomization(sync)["status"]["conditions"]
            if c["type"] == "Ready"
        )
        assert flux_ready_at >= model_ready_at, (flux_ready_at, model_ready_at)  # RFC 3339, UTC

        # A commit whose model can never build (wrong sha256) fails Flux's health check.
        bad = _commit(work, "detector 1.1.0 (wrong hash)", {
            "fleet/model.yaml": _model_doc(name, "1.1.0", url, "0" * 64),
        })  # fmt: skip

        def failed() -> bool:
            status, reason, message, _ = flux.ready(sync)
            return (
                status == "False"
                and name in message
                and reason in ("HealthCheckFailed", "ProgressingWithRetry", "ReconciliationFailed")
            )

        wait_until(failed, timeout=240, interval=0.5, what="Flux to report the stalled model")
        assert bad != first

        # git revert: Flux applies the old spec, the operator reconciles it, healthy again.
        git(work, "revert", "--no-edit", "HEAD")
        git(work, "push", "--quiet", "origin", "main")
        reverted = git(work, "rev-parse", "HEAD")
        wait_until(
            lambda: flux.ready(sync)[0] == "True" and reverted in flux.ready(sync)[3],
            timeout=240, interval=0.5, what="Flux sync of the revert",
        )  # fmt: skip
        assert _model_ready(crds, namespace, name) == "True"
        spec = json.loads(
            crds.kubectl(
                "get", "inferencemodels.edgefleet.io", name, "-n", namespace, "-o", "json"
            ).stdout
        )["spec"]
        assert spec["version"] == "1.0.0"


def _rollout_doc(version: str) -> dict:
    return {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "detector"},
        "spec": {
            "model": {"name": "detector", "version": version},
            "selector": {"matchLabels": {"site": "berlin"}},
            "healthGate": {"minHealthyDuration": "1s"},
            "maxUnavailable": "100%",
        },
    }


def _desired_versions(cp, ns: str) -> set[str | None]:
    items = json.loads(cp.kubectl("get", "edgedevices", "-n", ns, "-o", "json").stdout)["items"]
    versions = set()
    for dev in items:
        desired = [
            w for w in (dev.get("status") or {}).get("desired", []) if w["model"] == "detector"
        ]
        versions.add(desired[0]["version"] if desired else None)
    return versions


@pytest.mark.timeout(900)
def test_commit_rolls_out_to_devices_and_revert_rolls_back(
    crds, namespace, operator, flux, model_files, tmp_path, unique, capsys
):
    """Commit → Flux sync → build → rollout to devices; `git revert` → devices back.
    Devices are the fake fleet (tests/e2e/rollout_helpers.py), which plays gateway and
    agents; the device path itself is tested with the real gateway and agents elsewhere."""
    from tests.e2e.rollout_helpers import fleet

    directory, base_url = model_files
    models = {}
    for version, seed in (("1.0.0", 21), ("1.1.0", 22)):
        f = make_mlp(directory / f"roll-{unique}-{seed}.onnx", target_bytes=32 * 1024, seed=seed)
        models[version] = (f"{base_url}/roll-{unique}-{seed}.onnx", f.sha256)
    sync = f"roll-{unique}"
    timings: dict[str, float] = {}
    with fleet(crds, namespace, amd=5, arm=0) as devices, GitServer() as server:
        del devices
        repo_url = server.create("fleet")
        work = server.clone("fleet", tmp_path / "work")

        def commit(version: str) -> str:
            return _commit(work, f"detector {version}", {
                "fleet/kustomization.yaml": {"resources": ["model.yaml", "rollout.yaml"]},
                "fleet/model.yaml": _model_doc("detector", version, *models[version]),
                "fleet/rollout.yaml": _rollout_doc(version),
            })  # fmt: skip

        def deployed(revision: str, version: str, started: float, label: str) -> None:
            marks: dict[str, float] = {}

            def check() -> bool:
                flux.check_alive()
                status, _, _, applied = flux.ready(sync)
                now = time.monotonic() - started
                got = crds.kubectl("get", "inferencemodels.edgefleet.io", "detector",
                                   "-n", namespace, "-o", "json", check=False)  # fmt: skip
                model = json.loads(got.stdout) if got.returncode == 0 else {"spec": {}}
                if model["spec"].get("version") == version:
                    marks.setdefault("1 Flux applied the commit", now)
                    built = (model.get("status") or {}).get("observedGeneration") == model[
                        "metadata"
                    ]["generation"] and _model_ready(crds, namespace, "detector") == "True"
                    if built:
                        marks.setdefault("2 model built and signed", now)
                if _desired_versions(crds, namespace) == {version}:
                    marks.setdefault("3 every device assigned", now)
                done = status == "True" and revision in applied
                if done:
                    marks.setdefault("4 devices Ready and Flux healthy", now)
                return done

            wait_until(check, timeout=420, interval=0.5, what=f"{label} deployed",
                       alive=operator.service.check_alive)  # fmt: skip
            for key, value in marks.items():
                timings[f"{label}: {key}"] = value

        started = time.monotonic()
        first = commit("1.0.0")
        flux.apply_sync(sync, repo_url, "./fleet", namespace, timeout="5m")
        deployed(first, "1.0.0", started, "first commit (1.0.0)")
        started = time.monotonic()
        second = commit("1.1.0")
        deployed(second, "1.1.0", started, "bump to 1.1.0")
        started = time.monotonic()
        git(work, "revert", "--no-edit", "HEAD")
        git(work, "push", "--quiet", "origin", "main")
        deployed(git(work, "rev-parse", "HEAD"), "1.0.0", started, "git revert")
        rollout = json.loads(
            crds.kubectl(
                "get", "rollouts.edgefleet.io", "detector", "-n", namespace, "-o", "json"
            ).stdout
        )
        assert rollout["spec"]["model"]["version"] == "1.0.0"
        assert rollout["status"]["phase"] == "Completed"
    with capsys.disabled():
        for key, value in timings.items():
            print(f"  {key}: {value:.1f} s")
