"""A new version in a Rollout's spec starts a new attempt from the first step — also
when the new version's model is not built yet, which is how a Git commit that bumps
model and rollout together arrives, and also out of an abort (``git revert``).

Found by tests/e2e/test_gitops.py: the pass that saw the unbuilt model dropped the old
target but kept the old attempt's step, so the next pass gave the new version to
every device at once and called the rollout Completed — past the canary and the
failure threshold, with Flux reporting a broken version healthy."""

from __future__ import annotations

from edgefleet.api.inferencemodel import InferenceModel
from tests.unit.rollout_world import Fleet, device, model, rollout

V2 = "sha256:" + "2" * 64
V3 = "sha256:" + "3" * 64


def _model(version: str, digest: str, *, ready: bool = True) -> InferenceModel:
    m = model(version, platforms=("linux/amd64",), ready=ready)
    assert m.status is not None
    m.status.images[0].digest = digest
    return m


def _bump(f: Fleet, version: str) -> None:
    """What Flux applies: the Rollout at a new version (a new generation)."""
    f.ro.spec.model.version = version
    f.ro.metadata.generation = (f.ro.metadata.generation or 1) + 1


def _on(f: Fleet, version: str) -> set[str]:
    return {n for n in f.devices if (w := f.desired(n)) is not None and w.version == version}


def _completed_fleet() -> Fleet:
    """Ten devices on 2.0.0 through a 20% canary (2 devices, then the rest)."""
    f = Fleet(
        [device(f"d{i:02d}") for i in range(10)],
        rollout(canary={"steps": [{"setWeight": 20}]}),
        _model("2.0.0", V2),
    )
    f.step(0)
    assert len(_on(f, "2.0.0")) == 2
    f.report_all()
    f.step(1)
    f.step(12)
    f.report_all()
    f.step(13)
    f.step(25)
    assert f.ro.status is not None
    assert f.ro.status.phase == "Completed"
    assert len(_on(f, "2.0.0")) == 10
    return f


def test_a_version_bump_whose_model_is_still_building_runs_its_canary() -> None:
    f = _completed_fleet()
    _bump(f, "3.0.0")
    f.model = _model("3.0.0", V3, ready=False)  # committed together; the build runs
    d = f.step(30)
    assert f.ro.status is not None
    assert f.ro.status.phase == "Pending"
    assert f.cond("Progressing").reason == "ModelNotReady"
    assert f.ro.status.current_step == 0
    assert d.writes == []
    f.model = _model("3.0.0", V3)
    d = f.step(31)
    assert f.ro.status.phase == "Progressing"
    assert f.ro.status.started_at is not None
    assert len(d.writes) == 2, "only the canary wave gets the new version"
    assert f.cond("Ready").status != "True"


def test_a_broken_bump_aborts_at_its_canary_and_a_revert_completes_again() -> None:
    f = _completed_fleet()
    _bump(f, "3.0.0")
    f.model = _model("3.0.0", V3, ready=False)
    f.step(30)
    f.model = _model("3.0.0", V3)
    f.step(31)
    canary = _on(f, "3.0.0")
    assert len(canary) == 2
    f.report_all("Unhealthy")  # its probe fails
    d = f.step(32)
    assert f.ro.status is not None
    assert f.ro.status.phase == "Aborted"
    assert {w.name for w in d.writes} == canary
    assert _on(f, "2.0.0") == set(f.devices), "the wave is back on 2.0.0, the rest never left"
    # git revert: the Rollout and the model go back to 2.0.0 (the model rebuilds first).
    _bump(f, "2.0.0")
    f.model = _model("2.0.0", V2, ready=False)
    f.step(40)
    assert f.ro.status.phase == "Pending"
    assert f.cond("Aborted").status == "False"
    assert f.cond("Stalled").status == "False"
    f.model = _model("2.0.0", V2)
    f.report_all()
    f.step(41)
    f.step(52)
    f.step(53)
    f.step(65)
    assert f.ro.status.phase == "Completed"
    assert f.cond("Ready").status == "True"
    assert f.ro.status.counts is not None
    assert f.ro.status.counts.healthy == 10
