"""The agent end to end against the gateway stand-in, with the simulated runtime:
activation, rollback, all-or-none, refused documents, offline, restart."""

from __future__ import annotations

import pytest

from edgefleet_node.agent.simulated import Behaviour, SimulatedRuntime
from edgefleet_node.protocol import desired
from tests.unit.agent_gateway_fake import FakeGateway
from tests.unit.agent_helpers import running_agent, wait_for

REPO = "edgefleet/models/fleet/m"


def _running(rt: SimulatedRuntime) -> dict[str, str]:
    return {i.workload: i.manifest_digest for i in rt.running()}


def _condition(gw: FakeGateway, type_: str) -> tuple[str, str] | None:
    if not gw.reports:
        return None
    newest = gw.reports[max(gw.reports)]
    for c in newest.conditions:
        if c.type == type_:
            return c.status, c.reason
    return None


def test_a_new_document_runs_with_its_config_and_is_reported(gw, state) -> None:
    stale = state.blobs / ("ab" * 32 + ".partial")  # from an update superseded long ago
    stale.write_bytes(b"half")
    image = gw.add_image(REPO, [4096, 8192])
    workload = image.workload(config={"THRESHOLD": "0.7"})
    gw.publish((workload,))
    rt = SimulatedRuntime()
    with running_agent(state, rt):
        wait_for("Ready", lambda: _condition(gw, "Ready") == ("True", "WorkloadsHealthy"))
    assert _running(rt) == {"model": image.manifest.digest}
    assert rt.config_of(rt.running()[0]) == {"THRESHOLD": "0.7"}
    newest = gw.reports[max(gw.reports)]
    assert newest.desired_version == gw.version
    (status,) = newest.workloads
    assert (status.manifest_digest, status.health) == (image.manifest.digest, "Healthy")
    assert status.config_version == workload.config_version
    assert newest.facts.platform == "linux/amd64"
    assert not stale.exists()


def test_a_failing_probe_rolls_back_to_the_running_model(gw, state) -> None:
    good = gw.add_image(REPO, [4096], seed=1)
    bad = gw.add_image(REPO, [4096], seed=2)
    rt = SimulatedRuntime(Behaviour(fail_probe={bad.manifest.digest}))
    gw.publish((good.workload(),))
    with running_agent(state, rt):
        wait_for("v1", lambda: _running(rt) == {"model": good.manifest.digest})
        gw.publish((bad.workload(version="2"),))
        wait_for("UpdateFailed", lambda: _condition(gw, "UpdateFailed") == ("True", "ProbeFailed"))
        assert _running(rt) == {"model": good.manifest.digest}
        assert any(i.manifest_digest == bad.manifest.digest for i in rt.started)
        assert good.manifest.digest in rt.images()  # the previous image is kept


def test_several_workloads_activate_all_or_none(gw, state) -> None:
    a1, b1 = gw.add_image(REPO, [1000], seed=1), gw.add_image(REPO, [1000], seed=2)
    a2, b2 = gw.add_image(REPO, [1000], seed=3), gw.add_image(REPO, [1000], seed=4)
    rt = SimulatedRuntime(Behaviour(fail_probe={b2.manifest.digest}))
    gw.publish((a1.workload("a"), b1.workload("b")))
    with running_agent(state, rt):
        wait_for("v1", lambda: _running(rt) == {"a": a1.manifest.digest, "b": b1.manifest.digest})
        gw.publish((a2.workload("a", version="2"), b2.workload("b", version="2")))
        wait_for("UpdateFailed", lambda: _condition(gw, "UpdateFailed") == ("True", "ProbeFailed"))
        assert _running(rt) == {"a": a1.manifest.digest, "b": b1.manifest.digest}
        started = {i.manifest_digest for i in rt.started}
        assert a2.manifest.digest in started  # it was started, probed, and stopped again


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("foreign-key", "SignatureInvalid"),
        ("wrong-digest", "SignatureInvalid"),
        ("corrupt", "BlobDigestMismatch"),
        ("oversized", "BlobTooLarge"),
        ("device-missing", "DeviceMissing"),
    ],
)
def test_a_bad_image_changes_nothing_and_says_why(gw, state, fault: str, reason: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    good = gw.add_image(REPO, [4096], seed=1)
    other = gw.add_image(REPO, [4096], seed=9)
    kwargs: dict[str, object] = {}
    if fault == "foreign-key":
        bad = gw.add_image(REPO, [4096], seed=2, sign_key=ec.generate_private_key(ec.SECP256R1()))
    elif fault == "wrong-digest":  # a valid signature, but of another image
        bad = gw.add_image(REPO, [4096], seed=2, sign_digest=other.manifest.digest)
    else:
        bad = gw.add_image(REPO, [4096], seed=2)
        if fault == "corrupt":
            gw.faults.corrupt.add(bad.layers[0].digest)
        elif fault == "oversized":
            gw.faults.declare_more.add(bad.layers[0].digest)
        else:
            kwargs["host_devices"] = ("/dev/edgefleet-test-camera",)
    rt = SimulatedRuntime()
    gw.publish((good.workload(),))
    with running_agent(state, rt):
        wait_for("v1", lambda: _running(rt) == {"model": good.manifest.digest})
        gw.publish((bad.workload(version="2", **kwargs),))
        wait_for(reason, lambda: _condition(gw, "UpdateFailed") == ("True", reason))
        assert _running(rt) == {"model": good.manifest.digest}
        assert not any(i.manifest_digest == bad.manifest.digest for i in rt.started)
    assert not state.blob(bad.layers[0].digest).exists()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("older", "Downgrade"),
        ("same-version", "Replay"),
        ("foreign", "WrongDevice"),
        ("expired", "Expired"),
        ("unsigned", "SignatureInvalid"),
    ],
)
def test_a_refused_document_keeps_what_runs(gw, state, kind: str, reason: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    good = gw.add_image(REPO, [4096], seed=1)
    other = gw.add_image(REPO, [4096], seed=2)
    rt = SimulatedRuntime()
    gw.publish((good.workload(),), version=5)
    with running_agent(state, rt):
        wait_for("v5", lambda: _condition(gw, "Ready") == ("True", "WorkloadsHealthy"))
        new = (other.workload(version="2"),)
        if kind == "older":
            gw.publish(new, version=4)
        elif kind == "same-version":
            gw.publish(new, version=5)
            gw.version = 6  # the stand-in answers whatever it holds; the agent asked for v5
        elif kind == "foreign":
            gw.publish(new, version=6, device="dev-2")
        elif kind == "expired":
            gw.publish(new, version=6, expires_in=-60)
        else:
            gw.publish(new, version=6, key=ec.generate_private_key(ec.SECP256R1()))
        wait_for(reason, lambda: _condition(gw, "UpdateFailed") == ("True", reason))
        assert _running(rt) == {"model": good.manifest.digest}
    held = desired.DesiredState.from_bytes(
        __import__("edgefleet_node.protocol.dsse", fromlist=["Envelope"])
        .Envelope.from_bytes(state.desired.read_bytes())
        .payload
    )
    assert held.version == 5


def test_an_empty_document_stops_what_runs(gw, state) -> None:
    good = gw.add_image(REPO, [4096], seed=1)
    rt = SimulatedRuntime()
    gw.publish((good.workload(),))
    with running_agent(state, rt):
        wait_for("v1", lambda: _running(rt) == {"model": good.manifest.digest})
        gw.publish(())
        wait_for("nothing runs", lambda: _running(rt) == {})
        wait_for("Ready", lambda: _condition(gw, "Ready") == ("True", "NothingToRun"))


def test_a_workload_that_exits_is_started_again(gw, state) -> None:
    image = gw.add_image(REPO, [4096])
    gw.publish((image.workload(),))
    rt = SimulatedRuntime()
    with running_agent(state, rt) as agent:
        wait_for("v1", lambda: _running(rt) == {"model": image.manifest.digest})
        (first,) = rt.running()
        rt.stop(first)  # the container died behind the agent's back
        wait_for("restarted", lambda: _running(rt) == {"model": image.manifest.digest})
        (second,) = rt.running()
        assert second.id != first.id
        assert agent.activator.current["model"].instance == second
        wait_for("Ready", lambda: _condition(gw, "Ready") == ("True", "WorkloadsHealthy"))


def test_a_new_version_of_the_same_image_and_config_is_not_restarted(gw, state) -> None:
    image = gw.add_image(REPO, [4096])
    gw.publish((image.workload(version="1.0.0"),))
    rt = SimulatedRuntime()
    with running_agent(state, rt) as agent:
        wait_for("v1", lambda: _running(rt) == {"model": image.manifest.digest})
        gw.publish((image.workload(version="1.0.1"),))
        wait_for("relabelled", lambda: agent.activator.version == gw.version)
        wait_for(
            "reported",
            lambda: [w.version for w in gw.reports[max(gw.reports)].workloads] == ["1.0.1"],
        )
    assert len(rt.started) == 1


def test_a_document_key_rotation_overlaps(gw, state) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    old_key, new_key = gw.doc_key, ec.generate_private_key(ec.SECP256R1())
    image = gw.add_image(REPO, [4096])
    gw.publish((image.workload(version="1"),))
    rt = SimulatedRuntime()
    with running_agent(state, rt) as agent:
        wait_for("v1", lambda: agent.activator.version == gw.version)
        # Phase 1: the bundle names old and new, signed by the old key.
        gw.trust_serial, gw.trust_keys, gw.trust_signer = 2, [old_key, new_key], old_key
        gw.publish((image.workload(version="2"),), key=new_key)
        wait_for("v2 signed by the new key", lambda: agent.activator.version == gw.version)
        assert agent.identity.trust.serial == 2
        # Phase 2: the old key is dropped, by a bundle the new key signed.
        gw.trust_serial, gw.trust_keys, gw.trust_signer = 3, [new_key], new_key
        gw.publish((image.workload(version="3"),), key=new_key)
        wait_for("v3", lambda: agent.activator.version == gw.version)
        assert agent.identity.trust.serial == 3
        # A document signed by the retired key is refused now.
        gw.publish((image.workload(version="4"),), key=old_key)
        wait_for("refused", lambda: _condition(gw, "UpdateFailed") == ("True", "SignatureInvalid"))
    assert len(rt.started) == 1  # only labels changed: never restarted


def test_a_trust_bundle_signed_by_an_unknown_key_is_refused(gw, state) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    rogue = ec.generate_private_key(ec.SECP256R1())
    image = gw.add_image(REPO, [4096])
    gw.trust_serial, gw.trust_keys, gw.trust_signer = 9, [rogue], rogue
    gw.publish((image.workload(),), key=rogue)
    with running_agent(state) as agent:
        wait_for("refused", lambda: _condition(gw, "UpdateFailed") == ("True", "SignatureInvalid"))
        assert agent.identity.trust.serial == 0
        assert agent.activator.version is None


def test_a_workload_whose_metrics_fail_is_reported_without_them(gw, state) -> None:
    a, b = gw.add_image(REPO, [1000], seed=1), gw.add_image(REPO, [1000], seed=2)
    rt = SimulatedRuntime(Behaviour(fail_metrics={b.manifest.digest}))
    gw.publish((a.workload("a"), b.workload("b")))
    with running_agent(state, rt):
        wait_for("Ready", lambda: _condition(gw, "Ready") == ("True", "WorkloadsHealthy"))
    newest = gw.reports[max(gw.reports)]
    by_name = {w.name: w for w in newest.workloads}
    assert set(by_name) == {"a", "b"}
    assert by_name["a"].metrics.requests >= 1  # the other workload's metrics still arrive
    assert by_name["b"].health == "Healthy"
    assert by_name["b"].metrics == by_name["b"].metrics.__class__()  # none: zeros


def test_a_failed_update_waits_after_a_restart_too(gw, state, tmp_path) -> None:
    """A restarted agent does not start a broken update again at once (an agent in a
    restart loop would start it on every turn): the retry keeps its time, and the
    reason is reported again. A new document is still tried at once."""
    good = gw.add_image(REPO, [4096], seed=1)
    bad = gw.add_image(REPO, [4096], seed=2)
    behaviour = Behaviour(fail_probe={bad.manifest.digest})
    engine = tmp_path / "engine.json"  # what runs outlives the agent
    gw.publish((good.workload(),))
    with running_agent(state, SimulatedRuntime(behaviour, engine)) as agent:
        wait_for("v1", lambda: _condition(gw, "Ready") == ("True", "WorkloadsHealthy"))
        gw.publish((bad.workload(version="2"),))
        wait_for("UpdateFailed", lambda: _condition(gw, "UpdateFailed") == ("True", "ProbeFailed"))
        assert agent.settings.failed_retry >= 60
    last = max(gw.reports)
    rt = SimulatedRuntime(behaviour, engine)
    with running_agent(state, rt):
        wait_for("three reports after the restart", lambda: max(gw.reports) >= last + 3)
        assert _condition(gw, "UpdateFailed") == ("True", "ProbeFailed")
        assert rt.started == [], "the broken update was started again after the restart"
        assert _running(rt) == {"model": good.manifest.digest}
        fixed = gw.add_image(REPO, [4096], seed=3)
        gw.publish((fixed.workload(version="3"),))
        wait_for("v3", lambda: _running(rt) == {"model": fixed.manifest.digest})
        wait_for(
            "UpdateFailed cleared", lambda: (_condition(gw, "UpdateFailed") or ("",))[0] == "False"
        )
    assert not (state.root / "failed.json").exists()
