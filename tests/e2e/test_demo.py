"""The README's demo does what the README says: the example fleet from a real API
server, and the example model built, signed and Ready."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.timeout(900)
def test_demo_runs_the_fleet_and_builds_the_model(registry):
    # `registry` ensures the registry server is installed (the demo skips builds otherwise).
    done = subprocess.run(
        [sys.executable, "-m", "edgefleet.cli", "demo", "--no-keep"],
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert "edgedevice.edgefleet.io/berlin-line1-x86" in out
    assert "rollout.edgefleet.io/defect-detector-berlin" in out
    model_rows = [
        line for line in out.splitlines() if "inferencemodel.edgefleet.io/defect-detector" in line
    ]
    assert any("True" in row and "Reconciled" in row for row in model_rows), out
    assert "linux/amd64  sha256:" in out
    assert "linux/arm64  sha256:" in out
    amd64 = next(line for line in out.splitlines() if line.startswith("linux/amd64  sha256:"))
    assert "Int8Dynamic" in amd64, "the example quantises the amd64 model; status says so"
