"""Git commit → deploy through Flux, with Flux's own controllers (source-controller,
kustomize-controller) syncing a Git repository served over HTTP, the operator process
building, signing and rolling out, and devices on the real device path: a gateway
replica (mTLS, signed desired-state documents, reports → EdgeDevice status) and five
enrolled simulated agents (tests/e2e/gitops_devices.py) that verify every document.

- A model commit is built; Flux's verdict (``Kustomization`` with ``wait: true``,
  judged by kstatus) is Ready only once the model is; failed when it is stalled.
- Commit → sync → build → canary → every device runs the version → Flux healthy; a
  bump goes out the same way; ``git revert`` brings the devices back. Timings printed.
- A version whose probe fails on the devices: its canary fails, the Rollout aborts and
  rolls the wave back, Flux reports the failure; ``git revert`` heals it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from edgefleet.testing.flux import Flux
from edgefleet.testing.gitserver import GitServer, git
from edgefleet.testing.models import make_mlp
from edgefleet.testing.procs import ServiceError, wait_until
from tests.conftest import ROOT
from tests.e2e.gitops_devices import devices
from tests.e2e.gitops_world import FLEET, GitOps, argocd_health, commit, model_doc


@pytest.fixture(scope="module")
def flux(crds) -> Iterator[Flux]:
    with Flux(crds) as f:
        yield f


def _model_ready(cp, ns: str, name: str) -> str:
    out = cp.kubectl(
        "get", "inferencemodels.edgefleet.io", name, "-n", ns, "-o", "json", check=False
    )
    if out.returncode != 0:
        return "Absent"
    conditions = (json.loads(out.stdout).get("status") or {}).get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "Unknown")


def test_commit_deploys_and_flux_judges_health(
    crds, namespace, operator, flux, model_files, tmp_path, unique, request
):
    directory, base_url = model_files
    fixture = make_mlp(directory / f"gitops-{unique}.onnx", target_bytes=32 * 1024, seed=7)
    url = f"{base_url}/gitops-{unique}.onnx"
    name, sync = "detector", f"fleet-{unique}"
    request.addfinalizer(lambda: flux.delete_sync(sync))
    with GitServer() as server:
        repo_url = server.create("fleet")
        work = server.clone("fleet", tmp_path / "work")
        first = commit(work, "detector 1.0.0", {
            "fleet/kustomization.yaml": {"resources": ["model.yaml"]},
            "fleet/model.yaml": model_doc(name, "1.0.0", url, fixture.sha256),
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
        bad = commit(work, "detector 1.1.0 (wrong hash)", {
            "fleet/model.yaml": model_doc(name, "1.1.0", url, "0" * 64),
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


@pytest.fixture
def gitops(crds, namespace, operator, flux, model_files, tmp_path, unique) -> Iterator[GitOps]:
    """The operator (builds and rollouts), a gateway and five enrolled devices, a Git
    server whose repository Flux syncs into ``namespace``; versions 1.0.0, 1.1.0 and
    2.0.0 of the model's weights on the file server."""
    directory, base_url = model_files
    sync = f"devices-{unique}"
    with devices(crds, namespace, FLEET) as fleet, GitServer() as server:
        server.create("fleet")
        work = server.clone("fleet", tmp_path / "work")
        world = GitOps(crds, namespace, operator, flux, fleet, server, work, sync)
        for version, seed in (("1.0.0", 21), ("1.1.0", 22), ("2.0.0", 23)):
            path = directory / f"dev-{unique}-{seed}.onnx"
            weights = make_mlp(path, target_bytes=32 * 1024, seed=seed)
            world.weights[version] = (f"{base_url}/{path.name}", weights.sha256)
        try:
            yield world
        finally:
            flux.delete_sync(sync)


def _print_timings(capsys, timings: dict[str, float]) -> None:
    with capsys.disabled():
        print()
        for key, value in timings.items():
            print(f"  {key}: {value:.1f} s")


@pytest.mark.timeout(900)
def test_commit_rolls_out_to_devices_and_revert_rolls_back(gitops, capsys):
    """Commit → Flux sync → build → canary to real-path devices → Flux healthy; a bump
    goes out the same way; ``git revert`` brings every device back."""
    started = time.monotonic()
    first = gitops.commit("1.0.0")
    gitops.flux.apply_sync(gitops.sync, gitops.repo_url, "./fleet", gitops.ns, timeout="5m")
    gitops.deployed(first, "1.0.0", started, "first commit (1.0.0)")
    started = time.monotonic()
    gitops.deployed(gitops.commit("1.1.0"), "1.1.0", started, "bump to 1.1.0")
    started = time.monotonic()
    gitops.deployed(gitops.revert(), "1.0.0", started, "git revert")
    assert gitops.get("rollouts")["spec"]["model"]["version"] == "1.0.0"
    for sim in gitops.devices.sims:  # each device ran 1.0.0, 1.1.0, then 1.0.0 again
        assert sim.ran == ["1.0.0", "1.1.0", "1.0.0"], (sim.name, sim.ran)
    _print_timings(capsys, gitops.timings)


@pytest.mark.timeout(900)
def test_broken_version_aborts_flux_fails_and_revert_heals(gitops, capsys):
    """A commit of a version whose probe fails on the devices: the canary fails, the
    Rollout aborts and rolls its wave back, Flux's Kustomization reports the failure;
    the other devices never receive it. ``git revert`` makes Flux healthy again."""
    started = time.monotonic()
    first = gitops.commit("1.0.0")
    gitops.flux.apply_sync(gitops.sync, gitops.repo_url, "./fleet", gitops.ns, timeout="5m")
    gitops.deployed(first, "1.0.0", started, "first commit (1.0.0)")
    v1 = gitops.digests("1.0.0")
    assert v1 is not None
    for sim in gitops.devices.sims:
        sim.broken.add("2.0.0")
    started = time.monotonic()
    bad = gitops.commit("2.0.0")
    seen: dict[str, Any] = {}

    def flux_failed() -> bool:
        gitops.flux.check_alive()
        status, reason, message, _ = gitops.flux.ready(gitops.sync)
        ro = gitops.get("rollouts")
        if (ro.get("status") or {}).get("phase") == "Aborted":
            seen.setdefault("rollout: Rollout Aborted", time.monotonic() - started)
        seen.update(status=status, reason=reason, message=message)
        return status == "False" and f"Rollout/{gitops.ns}/detector" in message

    try:
        wait_until(flux_failed, timeout=120, interval=0.5, what="Flux to report the failure",
                   alive=gitops.operator.service.check_alive)  # fmt: skip
    except ServiceError as exc:
        status = gitops.get("rollouts").get("status")
        devs = [(d["metadata"]["name"], d.get("status")) for d in gitops.devices.edgedevices()]
        raise AssertionError(f"Flux: {seen}\nRollout: {status}\nDevices: {devs}") from exc
    gitops.timings["broken 2.0.0: flux: Kustomization failed"] = time.monotonic() - started
    if "rollout: Rollout Aborted" in seen:
        gitops.timings["broken 2.0.0: rollout: Rollout Aborted"] = seen["rollout: Rollout Aborted"]
    with capsys.disabled():
        print(f"\n  Flux Ready={seen['status']} reason={seen['reason']}: {seen['message']}")
    assert seen["reason"] == "HealthCheckFailed", seen
    assert "failed early due to stalled resources" in seen["message"], seen  # not a timeout
    ro = gitops.get("rollouts")
    assert ro["status"]["phase"] == "Aborted", ro["status"]
    verdict, message = argocd_health(ro)  # Argo CD would say the same
    assert verdict == "Degraded", message
    assert message.startswith("FailureThresholdExceeded: "), message
    assert "of 2 updated devices failed" in message, message  # the canary wave
    aborted = next(c for c in ro["status"]["conditions"] if c["type"] == "Aborted")
    assert aborted["reason"] == "FailureThresholdExceeded", aborted
    # The canary wave went back to 1.0.0; nobody ever stopped running 1.0.0.
    wait_until(lambda: gitops.devices.on("1.0.0", v1), timeout=60, interval=0.5,
               what="every device back on 1.0.0")  # fmt: skip
    offered = [s.name for s in gitops.devices.sims if "2.0.0" in s.offered]
    assert len(offered) == 2, offered  # the 40% canary of five devices
    for sim in gitops.devices.sims:
        assert sim.ran == ["1.0.0"], (sim.name, sim.ran)
    assert bad in gitops.flux.kustomization(gitops.sync)["status"].get("lastAttemptedRevision", "")
    # git revert: Flux applies 1.0.0 again, the Rollout completes, Flux is healthy.
    started = time.monotonic()
    gitops.deployed(gitops.revert(), "1.0.0", started, "git revert of 2.0.0", canary=False)
    _print_timings(capsys, gitops.timings)


def test_the_flux_example_is_accepted_by_fluxs_crds(flux):
    """manifests/examples/gitops/flux/ against the CRDs of the Flux we run (server-side
    dry run), with the health wait our verdicts rely on."""
    path = ROOT / "manifests" / "examples" / "gitops" / "flux" / "edgefleet-models.yaml"
    flux.cp.kubectl("apply", "--dry-run=server", "-f", str(path))
    docs = {d["kind"]: d for d in yaml.safe_load_all(path.read_text())}
    assert docs["Kustomization"]["spec"]["wait"] is True
    assert (
        docs["Kustomization"]["spec"]["sourceRef"]["name"]
        == docs["GitRepository"]["metadata"]["name"]
    )
