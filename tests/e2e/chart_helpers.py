"""Shared pieces of the chart e2e tests: where the chart lives and running ``helm``
against a control plane's kubeconfig."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT

__all__ = ["CHART", "helm"]

CHART = ROOT / "charts" / "edgefleet"


def helm(cp, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cp.tools.helm, f"--kubeconfig={cp.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
