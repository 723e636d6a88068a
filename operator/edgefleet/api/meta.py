"""Shared building blocks of the edgefleet API: group and version, object metadata,
conditions and the status every kind has.

The other building blocks live in their own modules and are re-exported here, so
``from edgefleet.api.meta import …`` finds every one of them:
:mod:`edgefleet.api.base` (:class:`ApiModel`, :func:`cel`: the base model and the CEL
rule helper), :mod:`edgefleet.api.fields` (platforms, DNS labels, durations,
configuration values) and :mod:`edgefleet.api.labels` (label checks, their CEL twins,
:class:`LabelSelector`).
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from edgefleet.api.base import ApiModel, cel
from edgefleet.api.fields import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    DURATION,
    PLATFORMS,
    ConfigValues,
    DnsLabel,
    Duration,
    Platform,
    PlatformSet,
    parse_duration,
)
from edgefleet.api.labels import (
    LabelSelector,
    LabelSelectorRequirement,
    cel_label_key,
    cel_label_value,
    check_label_key,
    check_label_value,
    check_labels,
)

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

_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN)


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
        return check_labels(labels)


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
