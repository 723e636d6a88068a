"""The incremental planner decides exactly what the full one does: random fleets and
random event sequences, each pass decided twice (with the memo carried across passes,
and from scratch), compared whole; and devices in flight are never written again."""

from __future__ import annotations

import datetime
import random
from typing import Any, Literal

import pytest

from edgefleet.api.edgedevice import CurrentWorkload, EdgeDevice
from edgefleet.api.meta import Condition
from edgefleet.api.rollout import Rollout
from edgefleet.domain.rollout import World, decide
from edgefleet.domain.rollout.views import Memo
from tests.unit import rollout_world as w

Health = Literal["Healthy", "Unhealthy", "Unknown"]
HEALTH: list[Health] = ["Healthy", "Healthy", "Healthy", "Healthy", "Unhealthy", "Unknown"]
EVENTS = [
    *["report"] * 3,
    *["online", "relabel", "join", "leave", "tick", "rival", "promote", "abort"],
    *["gave-up", "retry", "nothing"],
]


class _Fleet:
    """Devices with resourceVersions, a rollout and a rival; writes are applied."""

    def __init__(self, rng: random.Random, n: int) -> None:
        self.rng = rng
        self.rv = 0
        self.devices: dict[str, EdgeDevice] = {}
        for i in range(n):
            self.put(self._new(f"d{i}"))
        steps = rng.choice(
            [None, [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}], [{"setWeight": 50}]]
        )
        spec: dict[str, Any] = {
            "maxUnavailable": rng.choice(["100%", "30%", "2"]),
            "healthGate": {"minHealthyDuration": "2s", "maxP95LatencyMs": 50},
            "failureThreshold": rng.choice(["50%", "3"]),
        }
        if steps:
            spec["canary"] = {"steps": steps}
        self.ro = w.rollout("r", **spec)
        self.rival = w.rollout("rival", priority=0, selector={"matchLabels": {"line": "2"}})
        self.model = w.model()
        self.now = 0.0

    def _new(self, name: str) -> EdgeDevice:
        rng = self.rng
        dev: EdgeDevice = w.device(
            name,
            site=rng.choice(["berlin", "berlin", "berlin", "paris"]),
            platform=rng.choice(["linux/amd64", "linux/amd64", "linux/arm64", "linux/arm/v7"]),
            online=rng.random() > 0.1,
            suspended=rng.random() < 0.05,
        )
        labels = {**dev.metadata.labels, "line": rng.choice(["1", "2"])}
        return dev.model_copy(
            update={"metadata": dev.metadata.model_copy(update={"labels": labels})}
        )

    def put(self, dev: EdgeDevice) -> None:
        self.rv += 1
        meta = dev.metadata.model_copy(update={"resource_version": str(self.rv)})
        self.devices[dev.metadata.name] = dev.model_copy(update={"metadata": meta})

    def world(self, memo: Memo | None, max_writes: int = 1000) -> World:
        return World(
            self.ro,
            self.model,
            list(self.devices.values()),
            [self.rival],
            w.T0 + datetime.timedelta(seconds=self.now),
            max_writes=max_writes,
            memo=memo,
        )

    def event(self) -> None:
        """One random change of the world, as a watch would deliver it."""
        rng = self.rng
        name = rng.choice(sorted(self.devices))
        dev = self.devices[name]
        st = dev.status
        assert st is not None
        kind = rng.choice(EVENTS)
        if kind == "report":
            want = next((x for x in st.desired if x.model == "det"), None)
            current = [] if want is None else [
                CurrentWorkload(model="det", version=want.version, image_digest=want.image_digest,
                                health=rng.choice(HEALTH),
                                p95_latency_ms=rng.choice([5.0, 5.0, 80.0]))
            ]  # fmt: skip
            self.put(dev.model_copy(update={"status": st.model_copy(update={"current": current})}))
        elif kind == "gave-up":  # the agent rolled back by itself
            at = w.ts(self.now + rng.choice([-50.0, 0.0]))
            failed = Condition(type="UpdateFailed", status="True", reason="ProbeFailed",
                               message="probe failed", last_transition_time=at)  # fmt: skip
            conds = [*(c for c in st.conditions if c.type != "UpdateFailed"), failed]
            self.put(dev.model_copy(update={"status": st.model_copy(update={"conditions": conds})}))
        elif kind == "online":
            flip = w.device(name, online=rng.random() > 0.3).status
            assert flip is not None
            conds = flip.conditions
            self.put(dev.model_copy(update={"status": st.model_copy(update={"conditions": conds})}))
        elif kind == "relabel":
            labels = {**dev.metadata.labels, "site": rng.choice(["berlin", "paris"])}
            meta = dev.metadata.model_copy(update={"labels": labels})
            self.put(dev.model_copy(update={"metadata": meta}))
        elif kind == "join":
            self.put(self._new(f"late{self.rv}"))
        elif kind == "leave" and len(self.devices) > 3:
            del self.devices[name]
        elif kind == "tick":
            self.now += rng.choice([0.5, 1.0, 3.0])
        elif kind == "rival":
            spec = self.rival.spec.model_copy(update={"priority": rng.choice([0, 5, 20])})
            self.rival = self.rival.model_copy(update={"spec": spec})
        elif kind == "promote":
            meta = self.ro.metadata.model_copy(
                update={"annotations": {"edgefleet.io/promote": str(rng.randint(0, 3))}}
            )
            self.ro = self.ro.model_copy(update={"metadata": meta})
        elif kind == "retry":  # `kubectl edgefleet rollout retry`: starts over, a new start
            notes = {**self.ro.metadata.annotations, "edgefleet.io/retry": str(self.rv)}
            self.ro = self.ro.model_copy(
                update={
                    "metadata": self.ro.metadata.model_copy(update={"annotations": notes}),
                    "spec": self.ro.spec.model_copy(update={"abort": False}),
                }
            )
        elif kind == "abort" and rng.random() < 0.5:
            self.ro = self.ro.model_copy(
                update={"spec": self.ro.spec.model_copy(update={"abort": True})}
            )

    def apply(self, decision: Any) -> None:
        for write in decision.writes:
            dev = self.devices[write.name]
            st = dev.status
            assert st is not None
            status = st.model_copy(
                update={
                    "desired": list(write.desired),
                    "previous": list(write.previous),
                    "desired_revision": write.revision,
                }
            )
            self.put(dev.model_copy(update={"status": status}))
        self.ro = self.ro.model_copy(update={"status": decision.status})


@pytest.mark.parametrize("seed", range(12))
def test_incremental_decisions_equal_full_ones(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 (a reproducible fleet)
    fleet = _Fleet(rng, rng.choice([5, 20, 40]))
    memo = Memo()
    reused = 0
    for _ in range(60):
        for _ in range(rng.randint(0, 4)):
            fleet.event()
        most = rng.choice([3, 1000])
        full = decide(fleet.world(None, most))
        fast = decide(fleet.world(memo, most))
        assert fast == full
        reused += len(fleet.devices) - memo.assessed
        fleet.apply(full)
    assert reused > 0  # the memo did hold views (the test compares something)


def test_only_changed_devices_are_assessed() -> None:
    fleet = _Fleet(random.Random(1), 30)  # noqa: S311
    memo = Memo()
    first = decide(fleet.world(memo, max_writes=0))
    assert memo.assessed == 30
    fleet.ro = fleet.ro.model_copy(update={"status": first.status})  # started, phase: kept
    decide(fleet.world(memo, max_writes=0))
    assert memo.assessed == 30  # its own phase changed, and rivals read it: all again
    decide(fleet.world(memo, max_writes=0))
    assert memo.assessed == 0
    fleet.put(fleet.devices["d3"])
    fleet.put(fleet.devices["d7"])
    decide(fleet.world(memo))
    assert memo.assessed == 2
    fleet.now += 1  # time alone changes no view
    decide(fleet.world(memo))
    assert memo.assessed == 0


def _plain_rollout(**spec: Any) -> Rollout:
    return w.rollout("r", healthGate={"minHealthyDuration": "1s"}, **spec)


def test_devices_in_flight_are_not_written_again_and_count_as_updated() -> None:
    devices = [w.device(f"d{i}") for i in range(10)]
    fleet = w.Fleet(devices, _plain_rollout(maxUnavailable="5"), w.model())
    first = decide(World(fleet.ro, fleet.model, devices, [], w.T0))
    assert len(first.writes) == 5
    flying = frozenset(x.name for x in first.writes)
    # The next pass starts before the API server answered: nothing is written twice,
    # and the in-flight devices hold their maxUnavailable slots.
    again = decide(World(fleet.ro, fleet.model, devices, [], w.T0, in_flight=flying))
    assert again.writes == []
    assert again.status.counts is not None
    assert again.status.counts.updated == 5
    # With a larger budget the next pass writes only the others.
    wide = _plain_rollout(maxUnavailable="100%")
    more = decide(World(wide, fleet.model, devices, [], w.T0, in_flight=flying))
    assert {x.name for x in more.writes} == {d.metadata.name for d in devices} - flying
