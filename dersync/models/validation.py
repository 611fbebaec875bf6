"""Local validation: everything AEMO would reject that can be caught before the network.

A record is validated part by part (NMI details, installation), so an installation with a bad
device never blocks its NMI's details. Each problem names the part and the field path in AEMO's
spelling (`acConnections[0].devices[1].type`), because that is what an admin fixes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from dersync.models.installation import SERVER_OWNED_FIELDS, Installation
from dersync.models.nmi import SERVER_OWNED_NMI_FIELDS, NmiDetails
from dersync.settings import Enumerations
from dersync.vocabulary import Part


@dataclass(frozen=True)
class LocalProblem:
    """One reason a part of a record cannot be sent."""

    part: Part
    field: str
    message: str
    code: str = "LOCAL"

    def __str__(self) -> str:
        return f"{self.part}.{self.field}: {self.message}" if self.field else f"{self.part}: {self.message}"


@dataclass(frozen=True)
class PartCheck:
    """The outcome of validating one part: a payload ready to send, or problems."""

    part: Part
    payload: dict[str, Any] | None = None
    content_hash: str | None = None
    problems: tuple[LocalProblem, ...] = ()

    @property
    def valid(self) -> bool:
        return self.payload is not None and not self.problems


@dataclass(frozen=True)
class RecordCheck:
    nmi: str
    nmi_details: PartCheck | None
    installation: PartCheck | None
    problems: tuple[LocalProblem, ...] = field(default=())


def check_record(
    nmi: str,
    nmi_details_json: str | None,
    installation_json: str | None,
    enumerations: Enumerations,
    max_payload_bytes: int,
) -> RecordCheck:
    """Validate both parts of a stored record; absent parts are `None`, not problems."""
    context = {"enumerations": enumerations}
    details = (
        None
        if nmi_details_json is None
        else _check_part(Part.NMI, NmiDetails, nmi_details_json, nmi, context, max_payload_bytes,
                         SERVER_OWNED_NMI_FIELDS)
    )
    installation = (
        None
        if installation_json is None
        else _check_part(Part.INSTALLATION, Installation, installation_json, nmi, context,
                         max_payload_bytes, SERVER_OWNED_FIELDS)
    )
    return RecordCheck(nmi=nmi, nmi_details=details, installation=installation)


def _check_part(
    part: Part,
    model: type[BaseModel],
    raw_json: str,
    nmi: str,
    context: dict[str, Any],
    max_payload_bytes: int,
    server_owned: frozenset[str],
) -> PartCheck:
    try:
        parsed = model.model_validate_json(raw_json, context=context)
    except ValidationError as exc:
        return PartCheck(part, problems=tuple(_problems(part, exc)))
    payload = strip_server_owned(
        parsed.model_dump(mode="json", by_alias=True, exclude_unset=True), server_owned
    )
    problems: list[LocalProblem] = []
    if payload.get("nmi") != nmi:
        problems.append(LocalProblem(part, "nmi", f"{payload.get('nmi')!r} does not match the record's NMI {nmi!r}"))
    body = canonical_json(payload)
    # The installation is wrapped in {"data": ...}; allow for that and for the ids added on PUT.
    size = len(body) + 64 + 32 * _equipment_count(payload)
    if size > max_payload_bytes:
        problems.append(
            LocalProblem(part, "", f"serialised size {size:,} bytes exceeds AEMO's limit of "
                                   f"{max_payload_bytes:,} bytes; not sent", code="SIZE")
        )
    if problems:
        return PartCheck(part, problems=tuple(problems))
    return PartCheck(part, payload=payload, content_hash=content_hash(body))


def strip_server_owned(value: Any, server_owned: frozenset[str]) -> Any:
    """Remove AEMO-owned fields at any depth (they are never sent nor compared)."""
    if isinstance(value, dict):
        return {k: strip_server_owned(v, server_owned) for k, v in value.items() if k not in server_owned}
    if isinstance(value, list):
        return [strip_server_owned(v, server_owned) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """One byte string per meaning: the basis of change detection and of the size check."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _equipment_count(payload: dict[str, Any]) -> int:
    connections = payload.get("acConnections") or []
    return len(connections) + sum(len(c.get("devices") or []) for c in connections)


def _problems(part: Part, exc: ValidationError) -> list[LocalProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        path = format_location(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is mandatory and missing"
        elif error["type"] == "extra_forbidden":
            message = "is not a field AEMO knows (check the spelling)"
        elif error["type"] in ("json_invalid", "model_type", "json_type"):
            message = f"is not a JSON object ({message})"
        problems.append(LocalProblem(part, path, message))
    return problems


def format_location(loc: tuple[int | str, ...]) -> str:
    """('acConnections', 0, 'devices', 1, 'type') -> 'acConnections[0].devices[1].type'."""
    text = ""
    for item in loc:
        if isinstance(item, int):
            text += f"[{item}]"
        elif item:
            # A field name is the record's own text (an unknown key): show control characters
            # escaped, so that the path can be stored and printed (PostgreSQL text takes no NUL).
            name = item if item.isprintable() else ascii(item)[1:-1]
            text += f".{name}" if text else name
    return text
