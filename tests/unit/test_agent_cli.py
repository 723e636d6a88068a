"""``edgefleet-node``: configuration precedence, exit codes, enrol and status output."""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
import uuid
from pathlib import Path

import pytest

from edgefleet_node.agent import cli
from edgefleet_node.agent import config as cfg
from edgefleet_node.agent.reports import ReportQueue
from edgefleet_node.agent.simulated import SimulatedRuntime
from edgefleet_node.protocol import wire
from tests.unit.agent_gateway_fake import FakeGateway
from tests.unit.agent_helpers import FAST, enrolled, running_agent, wait_for


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('state_dir = "/from/file"\npoll_wait = 30\nstall_timeout = 5\n')
    env = {"EDGEFLEET_NODE_POLL_WAIT": "40", "EDGEFLEET_NODE_STALL_TIMEOUT": "7"}
    got = cfg.resolve({"poll_wait": 50}, env, conf)
    assert (got.poll_wait, got.stall_timeout, got.state_dir) == (50, 7.0, Path("/from/file"))
    assert got.probe_timeout == cfg.Config().probe_timeout


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("colour = 1\n", {}, "unknown key 'colour'"),
        ("poll_wait = 500\n", {}, "poll_wait must be between 1 and 120"),
        ("poll_wait = 'x'\n", {}, "is not a int"),
        ("", {"EDGEFLEET_NODE_RUNTIME": "lxc"}, "runtime must be one of docker, simulated"),
        ("", {"EDGEFLEET_NODE_COLOUR": "1"}, "unknown variable EDGEFLEET_NODE_COLOUR"),
        ("poll_wait = \n", {}, "not valid TOML"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, text, env, message) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text(text)
    with pytest.raises(cfg.ConfigError, match=message):
        cfg.resolve({}, env, conf)


def test_dev_root_is_configurable_and_finds_a_mounted_host_dev(gw, tmp_path: Path) -> None:
    """An agent in a container checks the host's /dev mounted elsewhere (here a
    directory holding the device node's stand-in)."""
    from edgefleet_node.agent import activate

    host = tmp_path / "host"
    (host / "dev").mkdir(parents=True)
    device = f"/dev/edgefleet-test-video{uuid.uuid4().hex[:8]}"  # not on this host
    (host / device.lstrip("/")).write_bytes(b"")
    conf = cfg.resolve({}, {"EDGEFLEET_NODE_DEV_ROOT": str(host)}, None)
    assert conf.dev_root == host
    with pytest.raises(cfg.ConfigError, match="dev_root must be an absolute path"):
        cfg.resolve({}, {"EDGEFLEET_NODE_DEV_ROOT": "host"}, None)
    fast = FAST.activation
    settings = cli.loop_settings(conf)
    assert settings.activation.dev_root == str(host)
    settings = dataclasses.replace(
        FAST,
        activation=activate.Settings(
            fast.stall_timeout, fast.probe_timeout, fast.disk_reserve, settings.activation.dev_root
        ),
    )
    image = gw.add_image("edgefleet/models/fleet/m", [1000])
    gw.publish((image.workload(host_devices=(device,)),))
    rt = SimulatedRuntime()
    with running_agent(enrolled(gw, tmp_path / "state"), rt, settings):
        wait_for("running", lambda: [i.manifest_digest for i in rt.running()])
    assert [i.manifest_digest for i in rt.running()] == [image.manifest.digest]
    assert not Path(device).exists()  # found under dev_root, not in this host's /dev


def test_exit_codes(tmp_path: Path, capsys) -> None:
    state = ["--state-dir", str(tmp_path / "s")]
    assert cli.main([*state, "status"]) == cli.EXIT_IDENTITY
    assert "not enrolled" in capsys.readouterr().err
    assert (
        cli.main([*state, "enroll", "--gateway", "https://127.0.0.1:1", "--token", "ef1.bad"])
        == cli.EXIT_REFUSED
    )
    err = capsys.readouterr().err
    assert "malformed" in err
    assert "ef1.bad" not in err  # a token is never echoed
    good = "ef1.ns.dev.0123456789abcdef." + "A" * 43 + "." + "0" * 64
    assert (
        cli.main([*state, "enroll", "--gateway", "https://127.0.0.1:1", "--token", good])
        == cli.EXIT_UNREACHABLE
    )
    assert cli.main([*state, "--config", str(tmp_path / "none.toml"), "status"]) == 2


def test_a_used_token_is_refused(gw: FakeGateway, tmp_path: Path, capsys) -> None:
    token = gw.token()
    args = ["enroll", "--gateway", gw.url, "--token", token, "--platform", "linux/amd64"]
    assert cli.main(["--state-dir", str(tmp_path / "a"), *args]) == cli.EXIT_OK
    assert cli.main(["--state-dir", str(tmp_path / "b"), *args]) == cli.EXIT_REFUSED
    assert "TokenInvalid" in capsys.readouterr().err


def test_status_shows_what_runs(gw: FakeGateway, tmp_path: Path, capsys) -> None:
    state = enrolled(gw, tmp_path / "s")
    key = (state.identity / "client.pem").read_text()
    image = gw.add_image("edgefleet/models/fleet/m", [1000])
    gw.publish((image.workload(),))
    rt = SimulatedRuntime()
    started = time.time()
    with running_agent(state, rt) as agent:
        wait_for("running", lambda: rt.running())
        wait_for("status written", lambda: json.loads(state.status.read_text())["workloads"])
        wait_for("in contact", lambda: json.loads(state.status.read_text()).get("lastContact"))
        gw.faults.offline = True  # what the agent reports from now on stays queued
        went_offline = time.time()
        wait_for("reports queued", lambda: len(agent.queue) >= 2)
    contact = json.loads(state.status.read_text())["lastContact"]
    assert started <= contact <= went_offline
    shown_contact = wire.format_time(datetime.datetime.fromtimestamp(contact, datetime.UTC))
    queued = len(ReportQueue(state.reports))
    assert queued >= 2
    assert cli.main(["--state-dir", str(state.root), "status", "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["device"] == "fleet/dev-1"
    assert doc["workloads"][0]["manifestDigest"] == image.manifest.digest
    assert doc["workloads"][0]["health"] == "Healthy"
    assert doc["activeVersion"] == gw.version
    assert doc["lastContact"] == shown_contact
    assert doc["queuedReports"] == queued
    assert cli.main(["--state-dir", str(state.root), "status"]) == 0
    human = capsys.readouterr().out
    assert image.manifest.digest in human
    assert f"last contact: {shown_contact}" in human
    assert f"reports:      {queued} queued" in human
    assert "PRIVATE KEY" not in human + json.dumps(doc)
    assert "PRIVATE KEY" in key  # (the key is where it belongs)


def test_enrolling_as_another_device_forgets_the_old_ones_document_and_reports(
    gw: FakeGateway, tmp_path: Path
) -> None:
    from edgefleet_node.agent import store
    from edgefleet_node.agent.reports import ReportQueue
    from edgefleet_node.protocol import report

    state = enrolled(gw, tmp_path / "s")
    instance = json.loads((state.identity / "identity.json").read_text())["instanceId"]
    state.desired.write_bytes(b"{}")
    ReportQueue(state.reports).put(report.Report(1, "2026-01-01T00:00:00Z", instance))
    gw.device = "dev-2"
    again = enrolled(gw, tmp_path / "s")
    assert not again.desired.exists()
    assert list(again.reports.glob("*.json")) == []
    doc = store.read_json(again.identity / "identity.json") or {}
    assert (doc["device"], doc["instanceId"]) == ("dev-2", instance)  # same installation
