"""Rollouts end to end that overlap: the higher priority wins the shared devices, and a tie
of equal priorities is a condition neither acts on. The real API server, the operator as
its own process (rollout controller only) and fake-fleet devices."""

from __future__ import annotations

from tests.e2e import rollout_helpers as h


def test_overlapping_rollouts_resolve_by_priority_and_a_tie_is_a_condition(
    crds, namespace, api, env, tmp_path
):
    h.put_model(api, namespace, "2.0.0")
    with h.fleet(crds, namespace, 20, 0, delay=0.05) as fleet:
        fleet.create(
            [f"line-{i:03d}" for i in range(10)], {"site": "berlin", "line": "a"}, "linux/amd64"
        )
        # Both rollouts exist before the operator starts: its first pass sees the overlap.
        # (Started first, it may give all 30 devices to "site" before "line" is applied;
        # "line" then takes its 10 back, which is right but is a second revision.)
        h.apply_rollout(crds, namespace, "site", maxUnavailable="100%", config={"MODE": "site"})
        h.apply_rollout(
            crds,
            namespace,
            "line",
            priority=10,
            maxUnavailable="100%",
            selector={"matchLabels": {"line": "a"}},
            config={"MODE": "line"},
        )
        with h.operator_process(env, tmp_path) as op:
            _overlap_resolved_by_priority(crds, namespace, api, op)


def _overlap_resolved_by_priority(crds, namespace, api, op) -> None:
    """The overlap of "site" and "line" is decided by priority; a tie is a condition."""
    site = h.wait_rollout(
        api,
        namespace,
        "site",
        lambda o: (o.get("status") or {}).get("phase") == "Completed",
        "site done",
        op,
    )
    h.wait_rollout(
        api,
        namespace,
        "line",
        lambda o: (o.get("status") or {}).get("phase") == "Completed",
        "line",
        op,
    )
    assert site["status"]["counts"]["selected"] == 20
    assert site["status"]["counts"]["lost"] == 10
    lost = site["status"]["lostDevices"]
    assert {n["name"] for n in lost} == {f"line-{i:03d}" for i in range(10)}
    assert all("line" in n["message"] and n["reason"] == "LostToHigherPriority" for n in lost)
    for d in h.devices(api, namespace):
        (want,) = d["status"]["desired"]
        expected = "line" if d["metadata"]["name"].startswith("line") else "site"
        assert want["rollout"] == expected
        assert want["config"]["MODE"] == expected
        assert d["status"]["desiredRevision"] == 1
    # Two active rollouts of the same model with the same priority: a tie, which
    # neither takes; the devices stay as they are.
    for name in ("twin", "triplet"):
        h.apply_rollout(
            crds,
            namespace,
            name,
            priority=20,
            paused=True,
            selector={"matchLabels": {"line": "a"}},
        )
    for name in ("twin", "triplet"):
        twin = h.wait_rollout(
            api,
            namespace,
            name,
            lambda o: h.cond(o, "DevicesSkipped").get("reason") == "PriorityTie",
            "tie",
            op,
        )
        assert "same priority" in h.cond(twin, "DevicesSkipped")["message"]
        assert twin["status"]["counts"]["selected"] == 0
        assert "PriorityTie" in h.events(crds, namespace, name)
    assert {d["status"]["desiredRevision"] for d in h.devices(api, namespace)} == {1}
    op.service.check_alive()
