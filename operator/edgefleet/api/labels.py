"""Kubernetes labels: key and value checks, their CEL twins, and the label selector.

:func:`check_label_key` and :func:`check_label_value` are the Python side of the rules
:func:`cel_label_key` and :func:`cel_label_value` write for the API server (RE2
patterns :data:`LABEL_KEY_RE`, :data:`LABEL_VALUE_RE`); :class:`LabelSelector` (the
``metav1.LabelSelector`` shape) uses both, so an object is valid for both or neither.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints

from edgefleet.api.base import ApiModel, cel
from edgefleet.api.fields import DNS_SUBDOMAIN

__all__ = [
    "LABEL_KEY_RE",
    "LABEL_VALUE_RE",
    "LabelSelector",
    "LabelSelectorRequirement",
    "cel_label_key",
    "cel_label_value",
    "check_label_key",
    "check_label_value",
    "check_labels",
]

_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_LABEL_PREFIX = re.compile(DNS_SUBDOMAIN)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


#: RE2 twins of the label checks below, for CEL: a qualified key (optional DNS-subdomain
#: prefix of at most 253 characters, checked with lastIndexOf) and a label value.
LABEL_KEY_RE = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
)
LABEL_VALUE_RE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"


def cel_label_key(expr: str) -> str:
    """CEL: ``expr`` is a valid label key."""
    return f"{expr}.matches('{LABEL_KEY_RE}') && {expr}.lastIndexOf('/') <= 253"


def cel_label_value(expr: str) -> str:
    """CEL: ``expr`` is a valid label value (length is bounded by the schema)."""
    return f"{expr}.matches('{LABEL_VALUE_RE}')"


def check_label_value(value: str) -> str:
    """``value`` if it is a valid label value, else ValueError."""
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise ValueError(
            f"label value {value!r} must be at most 63 alphanumerics, '-', '_' or '.',"
            " beginning and ending with an alphanumeric"
        )
    return value


def check_label_key(key: str) -> str:
    """``key`` if it is a valid label key, else ValueError."""
    _check_label_key(key)
    return key


def _check_label_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _LABEL_PREFIX.fullmatch(prefix)):
        raise ValueError(f"label key {key!r}: prefix must be a DNS subdomain")
    if not _LABEL_NAME.fullmatch(name):
        raise ValueError(f"label key {key!r}: name must be 1-63 alphanumerics, '-', '_', '.'")


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        _check_label_key(key)
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise ValueError(f"label {key!r}: value {value!r} must be at most 63 characters")
    return labels


class LabelSelectorRequirement(ApiModel):
    """A label selector requirement, as in ``metav1.LabelSelectorRequirement``."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0)"
                    " : (!has(self.values) || size(self.values) == 0)",
                    "values must be non-empty for In and NotIn,"
                    " and empty for Exists and DoesNotExist",
                ),
                cel(
                    cel_label_key("self.key"),
                    "key must be a valid label key: an optional DNS-subdomain prefix and '/',"
                    " then at most 63 alphanumerics, '-', '_' or '.'",
                    field_path=".key",
                ),
                cel(
                    f"!has(self.values) || self.values.all(v, {cel_label_value('v')})",
                    "values must be valid label values: at most 63 alphanumerics, '-', '_'"
                    " or '.', beginning and ending with an alphanumeric",
                    field_path=".values",
                ),
            ]
        }
    )

    key: str = Field(min_length=1, max_length=317)
    """The label key the selector applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values."""
    values: list[Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=list, max_length=64
    )
    """Values for In and NotIn; empty for Exists and DoesNotExist."""

    def model_post_init(self, context: Any, /) -> None:
        try:
            check_label_key(self.key)
        except ValueError as exc:
            raise ValueError(f"key must be a valid label key: {exc}") from exc
        for value in self.values:
            try:
                check_label_value(value)
            except ValueError as exc:
                raise ValueError(f"values must be valid label values: {exc}") from exc
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError("values must be non-empty for In and NotIn")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError("values must be empty for Exists and DoesNotExist")


class LabelSelector(ApiModel):
    """Selects EdgeDevices by label; at least one term is required."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "(has(self.matchLabels) && size(self.matchLabels) > 0)"
                    " || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",
                    "selector must have at least one matchLabels entry or matchExpressions term;"
                    " an empty selector would select every device",
                ),
                cel(
                    "!has(self.matchLabels) || self.matchLabels.all(k,"
                    f" {cel_label_key('k')} && {cel_label_value('self.matchLabels[k]')})",
                    "matchLabels keys and values must be valid label keys and values",
                    field_path=".matchLabels",
                ),
            ]
        }
    )

    match_labels: dict[str, Annotated[str, StringConstraints(max_length=63)]] | None = Field(
        default=None, max_length=32
    )
    """Labels a device must have, all of them, with these values."""
    match_expressions: list[LabelSelectorRequirement] | None = Field(default=None, max_length=16)
    """Set-based requirements a device must meet, all of them."""

    def model_post_init(self, context: Any, /) -> None:
        for key, value in (self.match_labels or {}).items():
            try:
                check_label_key(key)
                check_label_value(value)
            except ValueError as exc:
                raise ValueError(
                    f"matchLabels keys and values must be valid label keys and values: {exc}"
                ) from exc
        if not self.match_labels and not self.match_expressions:
            raise ValueError(
                "selector must have at least one matchLabels entry or matchExpressions term"
            )
