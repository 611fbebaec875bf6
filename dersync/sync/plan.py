"""Deciding, per record and part, what a pass must do, before any network call.

The plan is pure: from what the store holds (content, hashes of what AEMO last accepted or
rejected) and local validation, it says for each part either that no request is needed (and
why: absent, unchanged, still rejected, invalid) or that it goes out, with the payload to send.
The two shapes are two types, so a part to send always carries its payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dersync.models import LocalProblem, PartCheck, check_record
from dersync.settings import Settings
from dersync.store import StoredRecord
from dersync.vocabulary import Action, Part


@dataclass(frozen=True)
class PartToSend:
    """A part that goes to AEMO: its validated payload and the hash of its content."""

    part: Part
    payload: dict[str, Any]
    content_hash: str
    action: ClassVar[Action] = Action.SEND
    problems: ClassVar[tuple[LocalProblem, ...]] = ()


@dataclass(frozen=True)
class PartNotSent:
    """A part that needs no request, and why (`action`: absent, unchanged, still rejected, invalid)."""

    part: Part
    action: Action
    check: PartCheck | None = None

    @property
    def problems(self) -> tuple[LocalProblem, ...]:
        return () if self.check is None else self.check.problems

    @property
    def content_hash(self) -> str | None:
        return None if self.check is None else self.check.content_hash


PartPlan = PartToSend | PartNotSent


@dataclass(frozen=True)
class RecordPlan:
    record: StoredRecord
    nmi_details: PartPlan
    installation: PartPlan

    @property
    def nmi(self) -> str:
        return self.record.nmi

    @property
    def sends(self) -> bool:
        return isinstance(self.nmi_details, PartToSend) or isinstance(self.installation, PartToSend)

    @property
    def parts(self) -> tuple[PartPlan, PartPlan]:
        return (self.nmi_details, self.installation)


def plan_record(record: StoredRecord, settings: Settings) -> RecordPlan:
    checked = check_record(
        record.nmi, record.nmi_details, record.installation,
        settings.enumerations, settings.max_payload_bytes,
    )
    return RecordPlan(
        record=record,
        nmi_details=plan_part(Part.NMI, checked.nmi_details, record.nmi_synced_hash, record.nmi_rejected_hash),
        installation=plan_part(Part.INSTALLATION, checked.installation, record.inst_synced_hash,
                               record.inst_rejected_hash),
    )


def plan_part(part: Part, check: PartCheck | None, synced_hash: str | None, rejected_hash: str | None) -> PartPlan:
    if check is None:
        return PartNotSent(part, Action.ABSENT)
    if check.payload is None or check.content_hash is None or check.problems:
        return PartNotSent(part, Action.INVALID, check)
    if check.content_hash == synced_hash:
        return PartNotSent(part, Action.UNCHANGED, check)
    if check.content_hash == rejected_hash:
        return PartNotSent(part, Action.STILL_REJECTED, check)
    return PartToSend(part, check.payload, check.content_hash)
