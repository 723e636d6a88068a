"""Shared building blocks of the edgefleet API: the base model, metadata, conditions.

Every CR model derives from :class:`ApiModel`: camelCase on the wire, unknown fields
rejected (as the API server does with strict field validation), field documentation
taken from attribute docstrings so it lands in the generated CRD schema.

CEL rules live next to the Python check that mirrors them (:func:`cel`): the CRD
generator copies the rule into ``x-kubernetes-validations`` and the pydantic model
enforces the same condition, so an object is valid for both or for neither (a
property test over generated objects holds them to that).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

__all__ = [
    "API_VERSION",
    "DNS_LABEL",
    "DURATION",
    "GROUP",
    "PLATFORMS",
    "VERSION",
    "ApiModel",
    "Condition",
    "ConditionStatus",
    "ConfigValues",
    "DnsLabel",
    "Duration",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ObjectMeta",
    "ObjectStatus",
    "Platform",
    "PlatformSet",
    "cel",
    "cel_label_key",
    "cel_label_value",
    "check_label_key",
    "check_label_value",
    "parse_duration",
]

GROUP = "edgefleet.io"
VERSION = "v1alpha1"
API_VERSION: Final = "edgefleet.io/v1alpha1"

#: The platforms edgefleet builds images for, in OCI ``os/arch[/variant]`` form.
PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")
Platform = Literal["linux/amd64", "linux/arm64", "linux/arm/v7"]


def _unique(items: list[str]) -> list[str]:
    if len(set(items)) != len(items):
        raise ValueError("platforms must not repeat")
    return items


#: A non-empty set of platforms (a list without duplicates, as ``listType: set``).
PlatformSet = Annotated[
    list[Platform],
    AfterValidator(_unique),
    Field(min_length=1, max_length=3, json_schema_extra={"x-kubernetes-list-type": "set"}),
]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DnsLabel = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]

#: A Go-style duration with units ms, s, m, h ("90s", "1h30m"); never negative.
DURATION = r"^([0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)){1,4}$"
Duration = Annotated[str, StringConstraints(max_length=32, pattern=DURATION)]

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(_LABEL_PREFIX.pattern)
_CONFIG_KEY = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


#: RE2 twins of the label checks above, for CEL: a qualified key (optional DNS-subdomain
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


def parse_duration(text: str) -> float:
    """Seconds in a duration string such as ``"1h30m"``; raises ValueError if malformed."""
    if not re.fullmatch(DURATION, text):
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 5m, 1h30m (no sign)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def cel(rule: str, message: str, *, field_path: str | None = None) -> JsonDict:
    """One ``x-kubernetes-validations`` entry (the Python twin is written by hand)."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class ApiModel(BaseModel):
    """Base of every edgefleet API object part."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
        strict=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        # The API server prunes null values of non-nullable fields before it
        # validates; treat them the same way so both sides agree.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    def wire(self) -> dict[str, Any]:
        """The object as it goes to the API server: camelCase, no unset/None fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


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


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        _check_label_key(key)
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise ValueError(f"label {key!r}: value {value!r} must be at most 63 characters")
    return labels


class ObjectMeta(BaseModel):
    """The parts of Kubernetes ``metadata`` edgefleet reads; the rest passes through."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", strict=True
    )

    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = None

    @field_validator("name")
    @classmethod
    def _name_is_dns_subdomain(cls, name: str) -> str:
        if not _DNS_SUBDOMAIN.match(name):
            raise ValueError(f"name {name!r} must be a lowercase DNS subdomain")
        return name

    @field_validator("labels")
    @classmethod
    def _labels_valid(cls, labels: dict[str, str]) -> dict[str, str]:
        return _check_labels(labels)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One observation of the object's state, in the shape of ``metav1.Condition``."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    """Type of condition in CamelCase, e.g. Ready, Built, Online."""
    status: ConditionStatus
    """Status of the condition: True, False or Unknown."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation the condition was set for."""
    last_transition_time: str = Field(max_length=64)
    """When the condition last changed status (RFC 3339)."""
    reason: str = Field(
        min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    )
    """Machine-readable CamelCase reason for the last transition."""
    message: str = Field(default="", max_length=32768)
    """Human-readable details of the transition."""


class ObjectStatus(ApiModel):
    """What every kind's status has: the generation observed, and conditions."""

    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation the status describes."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Conditions in the metav1.Condition shape (types in edgefleet.api.conditions)."""


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


ConfigValues = Annotated[
    dict[
        Annotated[str, StringConstraints(pattern=_CONFIG_KEY)],
        Annotated[str, StringConstraints(max_length=4096)],
    ],
    Field(max_length=64),
]


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
