"""The clock offset learnt while enrolling is kept for ``run``: a device that enrols
with its clock years off and then starts without reaching the gateway still uses
gateway time (found by tests/integration/test_agent_clock.py under libfaketime: the
agent called its valid certificate ``CertificateExpired``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgefleet_node.agent import cli, identity, store
from edgefleet_node.agent.clock import Clock
from tests.unit.agent_gateway_fake import FakeGateway
from tests.unit.agent_helpers import enrolled

YEARS = 5 * 365 * 86400.0


def _device_clock(monkeypatch: pytest.MonkeyPatch, shift: float) -> None:
    """The device clock (``enroll`` and the identity store read it), ``shift`` seconds
    off the gateway's (the fake gateway's ``Date`` is the real time)."""
    for module in (cli, identity):
        monkeypatch.setattr(module, "Clock", lambda: Clock(wall=lambda: time.time() + shift))


def _status(root: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert cli.main(["--state-dir", str(root), "status", "-o", "json"]) == 0
    doc: dict[str, object] = json.loads(capsys.readouterr().out)
    return doc


@pytest.mark.parametrize("shift", [YEARS, -YEARS])
def test_an_enrolment_with_a_wrong_clock_keeps_the_offset_for_run(
    gw: FakeGateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    shift: float,
) -> None:
    _device_clock(monkeypatch, shift)
    state = enrolled(gw, tmp_path / "s")
    offset = (store.read_json(state.status) or {})["clockOffset"]
    assert isinstance(offset, float)
    assert offset == pytest.approx(-shift, abs=5)  # what Agent loads at start
    seen = _status(state.root, capsys)
    assert seen["connection"] == "Unknown"  # never ran: no claim about the certificate
    assert "hint" not in seen


def test_an_enrolment_with_a_right_clock_keeps_no_offset(
    gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _device_clock(monkeypatch, 60.0)  # within the tolerance: the device clock is used
    state = enrolled(gw, tmp_path / "s")
    assert (store.read_json(state.status) or {})["clockOffset"] == 0.0


def test_a_reenrolment_keeps_the_rest_of_the_status_and_survives_a_damaged_one(
    gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = enrolled(gw, tmp_path / "s")
    store.write_json(state.status, {"connection": "Online", "clockOffset": 0.0})
    _device_clock(monkeypatch, -YEARS)
    enrolled(gw, tmp_path / "s")
    doc = store.read_json(state.status) or {}
    assert doc["connection"] == "Online"
    assert doc["clockOffset"] == pytest.approx(YEARS, abs=5)
    state.status.write_bytes(b"{not json")
    enrolled(gw, tmp_path / "s")
    assert (store.read_json(state.status) or {})["clockOffset"] == pytest.approx(YEARS, abs=5)
