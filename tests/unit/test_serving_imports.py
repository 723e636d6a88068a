"""The in-image inference server imports only the standard library, numpy, onnxruntime
and itself; the check resolves relative imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SERVING_DIR = Path(__file__).resolve().parents[2] / "operator" / "edgefleet" / "serving"


_ALLOWED_THIRD_PARTY = {"numpy", "onnxruntime"}


def _imported(source: str, package: str) -> list[str]:
    """Absolute names of what a module of ``package`` imports, relative imports
    resolved (``from ..logs import x`` in ``edgefleet.serving`` is ``edgefleet.logs``)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.append(node.module or "")
                continue
            parts = package.split(".")
            base = parts[: len(parts) - (node.level - 1)]
            if node.level - 1 >= len(parts):
                names.append("." * node.level + (node.module or ""))  # beyond the top
            elif node.module:
                names.append(".".join([*base, node.module]))
            else:
                names += [".".join([*base, alias.name]) for alias in node.names]
    return names


def _outside_the_allowance(source: str, package: str = "edgefleet.serving") -> list[str]:
    return [
        name
        for name in _imported(source, package)
        if not (
            name == "edgefleet.serving"
            or name.startswith("edgefleet.serving.")
            or name.split(".")[0] in _ALLOWED_THIRD_PARTY
            or name.split(".")[0] in sys.stdlib_module_names
        )
    ]


@pytest.mark.parametrize(
    ("source", "outside"),
    [
        ("from .config import ServingConfig\nfrom . import logs", []),
        ("import json, numpy as np\nimport onnxruntime.capi", []),
        ("from ..logs import configure", ["edgefleet.logs"]),
        ("from .. import gateway", ["edgefleet.gateway"]),
        ("from ...edgefleet_node import protocol", ["...edgefleet_node"]),  # beyond the top
        ("import edgefleet.testing.models", ["edgefleet.testing.models"]),
        ("import structlog", ["structlog"]),
    ],
)
def test_the_import_check_resolves_relative_imports(source: str, outside: list[str]) -> None:
    assert _outside_the_allowance(source) == outside


def test_serving_imports_only_stdlib_numpy_onnxruntime_and_itself() -> None:
    for source in sorted(SERVING_DIR.glob("*.py")):
        outside = _outside_the_allowance(source.read_text())
        assert outside == [], f"{source.name} imports {outside}"
    # and the package imports without numpy/onnxruntime on the path
    result = subprocess.run(
        [sys.executable, "-S", "-E", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import edgefleet.serving as s; "
         "print('numpy' in sys.modules, 'onnxruntime' in sys.modules, sorted(s.__all__)[0])",
         str(SERVING_DIR.parents[1])],
        capture_output=True, text=True, check=True, timeout=8,
    )  # fmt: skip
    assert result.stdout.split() == ["False", "False", "ConfigError"]
