"""Every condition type the API declares is one some controller sets: no dead vocabulary.

A type that is declared but never set is read by users (and by Flux's or Argo CD's
health checks) as a promise; ``Healthy`` on Rollouts was one, until it was removed —
a Rollout's device health is ``status.counts.healthy`` and its verdict is ``Ready``.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgefleet.api.conditions import Type

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "edgefleet"


def _production_source() -> str:
    files = [
        p
        for p in PACKAGE.rglob("*.py")
        if "testing" not in p.relative_to(PACKAGE).parts and p != PACKAGE / "api/conditions.py"
    ]
    return "\n".join(p.read_text() for p in files)


def test_every_declared_condition_type_is_used_by_production_code():
    source = _production_source()
    declared = [name for name in vars(Type) if name.isupper()]
    unused = [name for name in declared if not re.search(rf"\bType\.{name}\b", source)]
    assert declared
    assert unused == [], f"declared in api/conditions.py but never set: {unused}"
