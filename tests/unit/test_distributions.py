"""The agent's distribution installs without the operator's heavy dependencies."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _deps(path: Path) -> list[str]:
    return tomllib.loads(path.read_text())["project"]["dependencies"]


def test_edge_node_needs_no_kopf_or_kubernetes():
    deps = " ".join(_deps(ROOT / "edge-node" / "pyproject.toml")).lower()
    for heavy in ("kopf", "kubernetes", "pydantic", "docker", "httpx"):
        assert heavy not in deps


def test_operator_depends_on_the_shared_agent_code():
    assert any(d.startswith("edgefleet-node") for d in _deps(ROOT / "pyproject.toml"))
