"""Field types shared by the edgefleet API kinds: platforms, DNS labels, durations,
configuration values.

Each is an ``Annotated`` type whose constraints land in the generated CRD schema and
are enforced by pydantic alike; :func:`parse_duration` turns a :data:`Duration` into
seconds.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

__all__ = [
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "DURATION",
    "PLATFORMS",
    "ConfigValues",
    "DnsLabel",
    "Duration",
    "Platform",
    "PlatformSet",
    "parse_duration",
]

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

#: A DNS subdomain (RFC 1123): object names, label-key prefixes (length checked apart).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DnsLabel = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]

#: A Go-style duration with units ms, s, m, h ("90s", "1h30m"); never negative.
DURATION = r"^([0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)){1,4}$"
Duration = Annotated[str, StringConstraints(max_length=32, pattern=DURATION)]

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_CONFIG_KEY = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


def parse_duration(text: str) -> float:
    """Seconds in a duration string such as ``"1h30m"``; raises ValueError if malformed."""
    if not re.fullmatch(DURATION, text):
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 5m, 1h30m (no sign)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


ConfigValues = Annotated[
    dict[
        Annotated[str, StringConstraints(pattern=_CONFIG_KEY)],
        Annotated[str, StringConstraints(max_length=4096)],
    ],
    Field(max_length=64),
]
