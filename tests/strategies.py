"""Hypothesis strategies that draw objects from a structural (CRD) OpenAPI schema.

Mostly values the schema allows — so CEL rules, which the schema alone cannot
express, decide — and now and then one that breaks a bound, a pattern or a type,
so both validators are also compared on plain schema violations.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

_WRONG_TYPE = st.sampled_from([None, "x", 7, -1, 1.5, True, [], {}])
# One node in _ODDS is replaced by something the schema forbids. The roll is an
# integer compared with a middle value because hypothesis favours boundary values.
_ODDS, _BREAK_AT = 80, 41


def _string(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    lo, hi = schema.get("minLength", 0), min(schema.get("maxLength", 24), 24)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda s: lo <= len(s) <= schema.get("maxLength", 10**6)
        )
    return st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=lo, max_size=max(lo, hi)
    )


def _number(schema: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if integer:
        return st.integers(min_value=lo, max_value=hi if hi is not None else 10**6)
    return st.floats(
        min_value=lo, max_value=hi if hi is not None else 1e6, allow_nan=False, allow_infinity=False
    )


def _broken(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    options: list[st.SearchStrategy[Any]] = [_WRONG_TYPE]
    if "maximum" in schema:
        options.append(st.just(schema["maximum"] + 1))
    if "minimum" in schema:
        options.append(st.just(schema["minimum"] - 1))
    if "maxLength" in schema:
        options.append(st.just("a" * (schema["maxLength"] + 1)))
    if "enum" in schema:
        options.append(st.just("NotAnEnumValue"))
    if "pattern" in schema:
        options.append(st.sampled_from([" ", "-1", "UPPER case", "a\n"]))
    if "maxItems" in schema:
        options.append(st.just([]) if schema.get("minItems") else _WRONG_TYPE)
    return st.one_of(options)


def from_structural(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy for values of ``schema``, with occasional violations."""
    return st.builds(
        lambda roll, good, bad: bad if roll == _BREAK_AT else good,
        st.integers(0, _ODDS - 1),
        _valid(schema),
        _broken(schema),
    )


def _valid(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = schema.get("type")
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return _number(schema, integer=True)
    if kind == "number":
        return _number(schema, integer=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        unique = schema.get("x-kubernetes-list-type") == "set"
        return st.lists(
            from_structural(schema["items"]),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 4), 4),
            unique_by=(lambda v: json.dumps(v, sort_keys=True)) if unique else None,
        )
    if kind == "object" and "properties" in schema:
        required = set(schema.get("required", []))
        fields = {name: from_structural(sub) for name, sub in schema["properties"].items()}
        return st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k in required},
            optional={k: v for k, v in fields.items() if k not in required},
        )
    if kind == "object" and "additionalProperties" in schema:
        keys = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,10}\Z") | st.sampled_from(
            ["bad-key", "1x"]
        )
        return st.dictionaries(
            keys,
            from_structural(schema["additionalProperties"]),
            max_size=min(schema.get("maxProperties", 3), 3),
        )
    raise ValueError(f"unsupported schema node: {schema}")
