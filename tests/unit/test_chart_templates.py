"""Static checks of the chart's templates that a render cannot be trusted to catch.

A hash cut to a prefix (``sha256sum … | trunc 16``) is a string to us, but YAML reads
``12e45678…`` as a float and ``1234567890123456`` as an integer; the API server then
refuses the object ("cannot unmarshal number … of type string"). Which one a render
produces depends on the hash, so a render test fails only now and then (it did, on a
Deployment annotation). Every such value must be quoted.
"""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "charts" / "edgefleet" / "templates"
# "key: {{ expr }}" where the value is the whole scalar
VALUE = re.compile(r"^\s*[-\w./]+:\s*\{\{-?\s*(?P<expr>.*?)\s*-?\}\}\s*(#.*)?$")
HASHY = re.compile(r"\b(trunc|sha256sum|sha1sum|adler32sum|randAlphaNum|randNumeric)\b")


def _unquoted_hash_values(templates: Path = TEMPLATES) -> list[str]:
    found = []
    for path in sorted(templates.glob("*.yaml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            m = VALUE.match(line)
            if m and HASHY.search(m["expr"]) and not re.search(r"\|\s*quote\b", m["expr"]):
                found.append(f"{path.name}:{number}: {line.strip()}")
    return found


def test_hash_prefixes_are_quoted() -> None:
    assert TEMPLATES.is_dir()
    assert _unquoted_hash_values() == []


def test_the_check_sees_an_unquoted_hash(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        "metadata:\n  annotations:\n    checksum/tls: {{ . | trunc 16 }}\n"
        "    ok: {{ . | trunc 16 | quote }}\n"
    )
    assert _unquoted_hash_values(tmp_path) == ["x.yaml:3: checksum/tls: {{ . | trunc 16 }}"]
