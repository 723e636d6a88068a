"""The agent offline, restarted, renewing, with a wrong clock, with an expired
certificate: what runs keeps running, nothing reported is lost or duplicated."""

from __future__ import annotations

import datetime
import json
import time
from collections import Counter
from pathlib import Path

import pytest

from edgefleet_node.agent import cli, identity, store
from edgefleet_node.agent import config as cfg
from edgefleet_node.agent.clock import Clock
from edgefleet_node.agent.simulated import SimulatedRuntime
from edgefleet_node.protocol import enroll
from tests.unit.agent_gateway_fake import FakeGateway
from tests.unit.agent_helpers import enrolled, running_agent, wait_for

REPO = "edgefleet/models/fleet/m"
YEARS = 5 * 365 * 86400.0


def _ready(gw: FakeGateway) -> bool:
    if not gw.reports:
        return False
    newest = gw.reports[max(gw.reports)]
    return any(c.type == "Ready" and c.status == "True" for c in newest.conditions)


def _arrived_once_in_order(gw: FakeGateway) -> list[int]:
    """Every seq the gateway received, checked: 1..n, each exactly once, in order."""
    twice = sorted(seq for seq, n in Counter(gw.deliveries).items() if n > 1)
    assert twice == [], f"reports delivered more than once: {twice}"
    assert gw.deliveries == sorted(gw.deliveries), "reports delivered out of order"
    assert gw.deliveries == list(range(1, len(gw.deliveries) + 1)), "reports lost"
    return gw.deliveries


def test_offline_keeps_serving_and_every_report_arrives_once(gw, state) -> None:
    image = gw.add_image(REPO, [4096])
    gw.publish((image.workload(),))
    rt = SimulatedRuntime()
    with running_agent(state, rt) as agent:
        wait_for("Ready", lambda: _ready(gw))
        gw.faults.offline = True
        before = max(gw.reports)
        wait_for("reports queued offline", lambda: len(agent.queue) >= 5)
        assert [i.manifest_digest for i in rt.running()] == [image.manifest.digest]
        wait_for("Offline", lambda: json.loads(state.status.read_text())["connection"] == "Offline")
        queued = agent.queue.batch()
        assert queued is not None
        queued_seqs = [r.seq for r in queued.reports]
        assert queued_seqs[0] == before + 1
        (serving,) = rt.running()
        assert rt.probe(serving, None, time.monotonic() + 1).healthy  # answers while offline
        gw.faults.offline = False
        wait_for("queue drained", lambda: len(agent.queue) == 0 and max(gw.reports) > before + 5)
    seqs = _arrived_once_in_order(gw)
    assert set(queued_seqs) <= set(seqs)
    assert rt.started == rt.running()  # served throughout: never restarted
    assert all(r.dropped_reports == 0 for r in gw.reports.values())


def test_a_lost_acknowledgement_is_a_second_delivery_the_check_above_sees(gw, state) -> None:
    """The control for the test above: when the gateway took a batch but its answer was
    lost, the agent sends it again (at-least-once; the gateway keeps the first)."""
    image = gw.add_image(REPO, [4096])
    gw.publish((image.workload(),))
    with running_agent(state) as agent:
        wait_for("Ready", lambda: _ready(gw))
        gw.faults.lose_ack_once = True
        agent.reporter.kick()
        wait_for("the batch resent", lambda: max(Counter(gw.deliveries).values()) > 1)
    with pytest.raises(AssertionError, match="more than once"):
        _arrived_once_in_order(gw)
    assert sorted(gw.reports) == list(range(1, max(gw.reports) + 1))


def test_a_restart_adopts_what_runs_without_restarting_it(gw, state, tmp_path) -> None:
    image = gw.add_image(REPO, [4096])
    gw.publish((image.workload(),))
    sim_state = tmp_path / "containers.json"
    rt = SimulatedRuntime(state_file=sim_state)
    with running_agent(state, rt):
        wait_for("Ready", lambda: _ready(gw))
    (first,) = rt.running()
    gw.faults.offline = True  # the agent restarts while the gateway is gone
    rt2 = SimulatedRuntime(state_file=sim_state)
    with running_agent(state, rt2) as agent:
        wait_for("adopted", lambda: "model" in agent.activator.current)
        assert rt2.running() == [first]
        assert rt2.started == []
        assert agent.activator.current["model"].instance == first


def test_a_crash_mid_update_stops_the_uncommitted_instance(gw, state, tmp_path) -> None:
    image = gw.add_image(REPO, [4096])
    gw.publish((image.workload(),))
    sim_state = tmp_path / "containers.json"
    rt = SimulatedRuntime(state_file=sim_state)
    with running_agent(state, rt):
        wait_for("Ready", lambda: _ready(gw))
    (first,) = rt.running()
    stray = rt.start(image.workload(), {})  # started, never committed, then the agent died
    rt2 = SimulatedRuntime(state_file=sim_state)
    with running_agent(state, rt2):
        wait_for("the stray one stopped", lambda: rt2.running() == [first])
    assert stray not in rt2.running()


def test_certificate_renewed_before_expiry_and_used_without_restart(gw, state) -> None:
    doc = json.loads((state.identity / "identity.json").read_text())
    old_serial = doc["serial"]
    doc["renewAt"] = time.time() - 1
    store.write_json(state.identity / "identity.json", doc, 0o600)
    image = gw.add_image(REPO, [4096])
    gw.publish((image.workload(),))
    with running_agent(state) as agent:
        wait_for("renewed", lambda: identity.load(state).serial != old_serial)
        new = identity.load(state)
        assert new.renew_at > time.time()
        gw.publish((image.workload(version="2"),))
        wait_for("still talking", lambda: agent.activator.version == gw.version)
    assert (state.identity / "client.pem").stat().st_mode & 0o777 == 0o600


def test_device_clock_in_the_future_uses_gateway_time(gw, state) -> None:
    image = gw.add_image(REPO, [4096])
    gw.publish((image.workload(),))  # expires in 24 h, long before the device's "now"
    clock = Clock(wall=lambda: time.time() + YEARS)
    rt = SimulatedRuntime()
    with running_agent(state, rt, clock=clock):
        wait_for("Ready", lambda: _ready(gw))
    newest = gw.reports[max(gw.reports)]
    skew = [c for c in newest.conditions if c.type == "ClockSkew"]
    assert skew[0].status == "True"
    assert abs(clock.offset + YEARS) < 60
    assert json.loads(state.status.read_text())["clockOffset"] == pytest.approx(-YEARS, abs=60)


def test_without_gateway_time_a_future_clock_would_refuse(gw, state) -> None:
    """The control for the test above: the same document, no Date correction."""
    from edgefleet_node.protocol import desired, dsse

    image = gw.add_image(REPO, [4096])
    doc = gw.publish((image.workload(),))
    keys = dsse.TrustedKeys.from_pems(identity.load(state).trust.signing_keys)
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=YEARS)
    with pytest.raises(desired.DocumentRejectedError, match="expired"):
        desired.accept(
            doc.sign([gw.doc_key]), keys, namespace="fleet", device="dev-1", held=None, now=future
        )


def test_device_clock_in_the_past_still_verifies_the_pinned_gateway(tmp_path: Path) -> None:
    """A gateway certificate valid only from tomorrow is what a device whose clock is a
    day behind sees: the chain to the pinned CA and the name are still checked."""
    tomorrow = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    with FakeGateway(tmp_path, server_not_before=tomorrow) as gw:
        state = enrolled(gw, tmp_path / "state")
        image = gw.add_image(REPO, [4096])
        gw.publish((image.workload(),))
        with running_agent(state):
            wait_for("Ready", lambda: _ready(gw))
    (tmp_path / "other").mkdir()
    with FakeGateway(tmp_path / "other", server_not_before=tomorrow) as impostor:
        code = cli.main(
            [
                "--state-dir",
                str(tmp_path / "s2"),
                "enroll",
                "--gateway",
                impostor.url,
                "--token",
                gw_token_for(impostor, gw),
            ]
        )
    assert code == cli.EXIT_REFUSED  # its CA does not match the pin in the token


def gw_token_for(impostor: FakeGateway, real: FakeGateway) -> str:
    """A token pinning the real gateway's CA, used against the impostor."""
    token = enroll.BootstrapToken.parse(impostor.token())
    return str(
        enroll.BootstrapToken(
            token.namespace,
            token.device,
            token.token_id,
            token.secret,
            enroll.ca_hash(real.ca_cert),
        )
    )


def test_an_expired_certificate_says_how_back_and_reenrolment_keeps_the_workload(gw, state) -> None:
    image = gw.add_image(REPO, [4096])
    gw.publish((image.workload(),))
    rt = SimulatedRuntime()
    with running_agent(state, rt):
        wait_for("Ready", lambda: _ready(gw))
        (first,) = rt.running()
        # The certificate expired while offline: the gateway refuses it.
        gw.refuse_serials.add(identity.load(state).serial)
        wait_for(
            "CertificateExpired",
            lambda: json.loads(state.status.read_text())["connection"] == "CertificateExpired",
        )
        shown = cli.status(cfg.Config(state_dir=state.root))
        assert "edgefleet-node enroll" in shown["hint"]
        assert rt.running() == [first]
        # The way back: a new token, enrol again while the agent runs.
        cli.enroll_device(
            cfg.Config(state_dir=state.root, platform="linux/amd64"),
            gw.url,
            enroll.BootstrapToken.parse(gw.token()),
        )
        wait_for("Online", lambda: json.loads(state.status.read_text())["connection"] == "Online")
        assert rt.running() == [first]
        assert rt.started == [first]


def test_a_gateway_that_is_down_is_offline_not_an_expired_certificate(gw, state) -> None:
    """A device clock years ahead calls the certificate expired, but a gateway that
    does not answer at all has refused nothing: no re-enrolment hint."""
    gw.__exit__(None, None, None)  # nothing listens on its port any more
    with running_agent(state, clock=Clock(wall=lambda: time.time() + YEARS)):
        wait_for("Offline", lambda: _connection(state) == "Offline")
    shown = cli.status(cfg.Config(state_dir=state.root))
    assert "enroll" not in shown.get("hint", ""), shown


def test_stopping_the_agent_mid_poll_is_not_reported_as_unreachable(gw, state, capfd) -> None:
    with running_agent(state):
        wait_for("a poll held open", lambda: len(gw.polls) >= 2)
    assert "gateway unreachable" not in capfd.readouterr().err


def _connection(state: store.StateDir) -> str | None:
    if not state.status.exists():
        return None
    return json.loads(state.status.read_text()).get("connection")


def test_an_overloaded_gateway_is_asked_again_only_after_retry_after(gw, state) -> None:
    gw.faults.overloaded = 2
    with running_agent(state):  # backoff alone would retry within 0.3 s
        wait_for("two polls", lambda: len(gw.polls) >= 2)
    assert gw.polls[1] - gw.polls[0] >= 2.0
