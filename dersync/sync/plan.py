"""Deciding, per record and part, what a pass must do, before any network call.

The plan is pure: from what the store holds (content, hashes of what AEMO last accepted or
rejected) and local validation, it says for each part: nothing to do, not sendable (local
exceptions), or send. Unchanged content costs no HTTP at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dersync.models import LocalProblem, PartCheck, check_record
from dersync.settings import Settings
from dersync.store import StoredRecord

Action = Literal["absent", "unchanged", "still_rejected", "invalid", "send"]


@dataclass(frozen=True)
class PartPlan:
    part: Literal["nmi", "installation"]
    action: Action
    check: PartCheck | None = None

    @property
    def problems(self) -> tuple[LocalProblem, ...]:
        return () if self.check is None else self.check.problems

    @property
    def content_hash(self) -> str | None:
        return None if self.check is None else self.check.content_hash


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
        return self.nmi_details.action == "send" or self.installation.action == "send"

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
        nmi_details=_plan_part("nmi", checked.nmi_details, record.nmi_synced_hash, record.nmi_rejected_hash),
        installation=_plan_part("installation", checked.installation, record.inst_synced_hash,
                                record.inst_rejected_hash),
    )


def _plan_part(part: Literal["nmi", "installation"], check: PartCheck | None,
               synced_hash: str | None, rejected_hash: str | None) -> PartPlan:
    if check is None:
        return PartPlan(part, "absent")
    if not check.valid:
        return PartPlan(part, "invalid", check)
    if check.content_hash == synced_hash:
        return PartPlan(part, "unchanged", check)
    if check.content_hash == rejected_hash:
        return PartPlan(part, "still_rejected", check)
    return PartPlan(part, "send", check)
