"""What every AEMO record model shares: wire names, strictness and enumeration checks.

Python attributes are snake_case; on the wire every field is spelt exactly as AEMO spells it
(camelCase, with AEMO's own oddities such as `exportLimitkW` given as explicit aliases).
Validation is strict because AEMO's JSON schema is: a number sent as a string is a 400 there,
so it must be a `local` exception here, before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo
from pydantic.alias_generators import to_camel

NMI_PATTERN = re.compile(r"^[A-HJ-NP-Z0-9]{10}$")
#: ASCII digits only: the validator's `\d` would also accept other scripts' digits ("２０２４").  # noqa: RUF003 - the point of the comment
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
#: The largest integer JSON carries faithfully between implementations (RFC 8259 section 6:
#: IEEE 754 doubles); a count beyond it is not a count AEMO can hold.
MAX_JSON_INTEGER = 2**53 - 1


class AemoModel(BaseModel):
    """Base for every record AEMO receives: strict types, no unknown fields, AEMO's names."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        str_strip_whitespace=False,
        frozen=True,
    )


def _check_nmi(value: str) -> str:
    if not NMI_PATTERN.fullmatch(value):
        raise ValueError(
            "NMI must be exactly 10 characters of digits and capital letters A-Z except I and O"
        )
    return value


def _enumeration(name: str) -> Callable[[str, ValidationInfo], str]:
    """A validator that checks a value against a list kept in configuration (via context)."""

    def check(value: str, info: ValidationInfo) -> str:
        allowed = _allowed(info, name)
        if allowed is not None and value not in allowed:
            shown = ", ".join(repr(v) for v in allowed)
            raise ValueError(f"{value!r} is not one of AEMO's values: {shown}")
        return value

    return check


def _allowed(info: ValidationInfo, name: str) -> list[str] | None:
    context: Any = info.context
    if context is None:
        return None
    enumerations = context.get("enumerations")
    return None if enumerations is None else list(getattr(enumerations, name))


Nmi = Annotated[str, AfterValidator(_check_nmi)]
Number = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=MAX_JSON_INTEGER)]
#: The shape only: whether the day exists (2023-02-29) is AEMO's first-level rule (1012), and
#: comes back as a first-level exception naming the field (the demo's samples rely on it).
IsoDate = Annotated[str, Field(pattern=DATE_PATTERN)]
ShortText = Annotated[str, Field(max_length=1000)]
EquipmentType = Annotated[str, AfterValidator(_enumeration("equipment_types"))]
DeviceType = Annotated[str, AfterValidator(_enumeration("device_types"))]
