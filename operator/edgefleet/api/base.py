"""The base of every edgefleet API model, and the CEL rule helper.

Every CR model derives from :class:`ApiModel`: camelCase on the wire, unknown fields
rejected (as the API server does with strict field validation), field documentation
taken from attribute docstrings so it lands in the generated CRD schema.

CEL rules live next to the Python check that mirrors them (:func:`cel`): the CRD
generator copies the rule into ``x-kubernetes-validations`` and the pydantic model
enforces the same condition, so an object is valid for both or for neither (a
property test over generated objects holds them to that).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

__all__ = ["ApiModel", "cel"]


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
