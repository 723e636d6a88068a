"""Invalid objects, one per rule, shared by the pydantic tests and the API-server tests.

Each case starts from a valid example in ``manifests/examples/``, breaks one thing,
and names what the API server's error must mention (the offending field, or the
rule's message where the server reports a whole-object rule).
"""

from __future__ import annotations

from tests.case_builders import EXAMPLES, Case, example, example_objects
from tests.cases_field_rules import FIELD_RULE_CASES
from tests.cases_unsatisfiable import UNSATISFIABLE_CASES

__all__ = ["CASES", "EXAMPLES", "Case", "example", "example_objects"]

#: Every case, field rules first (builders: case_builders.py).
CASES: tuple[Case, ...] = (*FIELD_RULE_CASES, *UNSATISFIABLE_CASES)
