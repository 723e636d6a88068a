"""The README's demo does what the README says.

``--no-builds``: the example fleet from a real API server. The full demo: the example
model built and signed; three devices (real agents in containers, two amd64 and one
arm64) on 1.0.0; a canary of 2.0.0 completes; a device's workload answers an inference
request; a broken 3.0.0 aborts and every device is back on 2.0.0, Ready.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

DEVICES = ("berlin-line1-x86", "berlin-line2-x86", "berlin-line1-pi-01")


def _demo(*args: str, timeout: float) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "edgefleet.cli", "demo", "--no-keep", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.timeout(300)
def test_demo_without_builds_shows_the_example_fleet():
    out = _demo("--no-builds", timeout=280)
    assert "edgedevice.edgefleet.io/berlin-line1-x86" in out
    assert "rollout.edgefleet.io/defect-detector-berlin" in out
    assert "Step 2" not in out


def _device_rows(block: str) -> dict[str, list[str]]:
    return {
        line.split()[0]: line.split() for line in block.splitlines() if line.startswith(DEVICES)
    }


@pytest.mark.timeout(3000)
def test_demo_tells_the_whole_story(registry, docker_engine):
    # `registry` ensures the registry server is installed (the demo skips builds otherwise).
    out = _demo(timeout=2900)
    model_rows = [
        line for line in out.splitlines() if "inferencemodel.edgefleet.io/defect-detector" in line
    ]
    assert any("True" in row and "Reconciled" in row for row in model_rows), out
    amd64 = next(line for line in out.splitlines() if line.startswith("linux/amd64  sha256:"))
    assert "Int8Dynamic" in amd64, "the example quantises the amd64 model; status says so"
    assert any(line.startswith("linux/arm64  sha256:") for line in out.splitlines())

    steps = out.split("\n>>> ")
    v2 = next(s for s in steps if s.startswith("Step 6"))
    assert "Completed: 3/3 updated, 3 healthy, 0 failed" in v2, v2
    answered = next(s for s in steps if s.startswith("Step 7"))
    assert '"outputs"' in answered
    assert "answered (HTTP 200): within 0.0" in out
    v3 = next(s for s in steps if s.startswith("Step 8"))
    assert " Aborted: " in v3, v3
    back = next(s for s in steps if s.startswith("Every device is back on 2.0.0"))
    rows = _device_rows(back)
    assert set(rows) == set(DEVICES), back
    for name, row in rows.items():
        # NAME PLATFORM ONLINE READY DESIRED CURRENT LAST-SEEN
        assert row[2:6] == ["True", "True", *["defect-detector=2.0.0"] * 2], (name, row)
