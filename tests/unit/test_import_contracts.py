"""The import contracts in pyproject.toml cover every module, including ones added later.

``lint-imports`` checks the contracts; these tests check the contracts' lists against
the package on disk, so a new top-level module is not silently outside them, and check
at run time what static analysis cannot: that the CLI reaches the demo (the one user
of the test harnesses) only lazily, so no production command imports
``edgefleet.testing`` — which the control-plane image does not even contain.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "edgefleet"
#: The test harnesses and the local demo built on them; everything else is production.
HARNESS = ("edgefleet.testing", "edgefleet.demo", "edgefleet.demo_fleet")


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def _contract(type_: str, **match: Any) -> dict[str, Any]:
    found = [
        c
        for c in _contracts()
        if c["type"] == type_ and all(c.get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, (type_, match)
    return found[0]


def _top_level_modules() -> set[str]:
    names = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    names |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    return {f"edgefleet.{n}" for n in names}


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


def _production_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("edgefleet", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if not _under(name, HARNESS) and parts[-1] != "__main__":
            names.append(name)
    return names


def test_only_the_demo_may_import_the_harnesses():
    protected = _contract("protected", protected_modules=["edgefleet.testing"])
    assert set(protected["allowed_importers"]) == {"edgefleet.demo", "edgefleet.demo_fleet"}
    demo = _contract("protected", protected_modules=["edgefleet.demo", "edgefleet.demo_fleet"])
    assert set(demo["allowed_importers"]) == {"edgefleet.cli", "edgefleet.demo"}


def test_every_production_module_is_barred_from_the_harnesses_even_indirectly():
    forbidden = _contract("forbidden", forbidden_modules=["edgefleet.testing"])
    expected = {m for m in _top_level_modules() if not _under(m, HARNESS)}
    assert expected - set(forbidden["source_modules"]) == set()
    assert "edgefleet_node" in forbidden["source_modules"]
    # the only way through is the demo subcommand's lazy import, named and nothing more
    assert forbidden.get("ignore_imports") == ["edgefleet.cli -> edgefleet.demo"]


def test_serving_is_barred_from_every_other_edgefleet_module():
    (contract,) = [
        c
        for c in _contracts()
        if c.get("source_modules") == ["edgefleet.serving"]
        and any(m.startswith("edgefleet.") for m in c["forbidden_modules"])
    ]
    assert set(contract["forbidden_modules"]) >= _top_level_modules() - {"edgefleet.serving"}
    assert not contract.get("allow_indirect_imports", False)


def test_importing_every_production_module_loads_no_harness():
    names = _production_modules()
    assert "edgefleet.cli" in names
    assert "edgefleet" in names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(n for n in sys.modules if n.startswith({HARNESS!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=8, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
