"""Recording what happened to a record: sync state, exceptions and AEMO ids in one transaction.

A crash at any point therefore leaves a record either synced (with its transactionId) or still
due; never synced without the exceptions and ids that came with the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Sequence

from sqlalchemy import case, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dersync.store.equipment import EquipmentId, save_ids
from dersync.store.exceptions import Finding, sync_exceptions
from dersync.store.tables import der_record

Result = Literal["synced", "rejected", "retry", "unchanged", "absent"]


@dataclass(frozen=True)
class PartOutcome:
    """What became of one part (NMI details or installation) in this pass."""

    part: Literal["nmi", "installation"]
    result: Result
    content_hash: str | None = None
    covered_levels: frozenset[str] = frozenset()
    findings: Sequence[Finding] = ()
    at_aemo: bool | None = None
    transaction_id: str | None = None
    equipment: Sequence[EquipmentId] | None = None


@dataclass(frozen=True)
class RecordOutcome:
    nmi: str
    revision: int
    parts: Sequence[PartOutcome] = field(default_factory=tuple)
    error: str | None = None

    @property
    def state(self) -> str:
        results = {p.result for p in self.parts}
        if "retry" in results:
            return "retry"
        if "rejected" in results:
            return "rejected"
        return "synced"

    @property
    def transaction_id(self) -> str | None:
        ids = [p.transaction_id for p in self.parts if p.transaction_id]
        return ids[-1] if ids else None


_HASH_COLUMNS = {"nmi": ("nmi_synced_hash", "nmi_rejected_hash", "nmi_at_aemo"),
                 "installation": ("inst_synced_hash", "inst_rejected_hash", "inst_at_aemo")}


async def record_outcome(connection: AsyncConnection, outcome: RecordOutcome, now: datetime) -> None:
    state = outcome.state
    still_due = state == "retry"
    values: dict[str, object] = {
        "sync_state": state,
        "attempt_started_at": None if not still_due else der_record.c.attempt_started_at,
        "last_attempt_at": now,
        "last_error": outcome.error,
        # If the input changed while we worked, the row stays due for the next pass.
        "due": case((der_record.c.revision == outcome.revision, still_due), else_=True),
    }
    if state == "synced":
        values["last_synced_at"] = now
    if outcome.transaction_id:
        values["last_transaction_id"] = outcome.transaction_id
    for part in outcome.parts:
        synced_col, rejected_col, at_aemo_col = _HASH_COLUMNS[part.part]
        if part.result == "synced":
            values[synced_col] = part.content_hash
            values[rejected_col] = None
        elif part.result == "rejected":
            values[rejected_col] = part.content_hash
        if part.at_aemo is not None:
            values[at_aemo_col] = part.at_aemo
        await sync_exceptions(connection, outcome.nmi, part.part, part.covered_levels, part.findings, now)
        if part.equipment:
            await save_ids(connection, outcome.nmi, part.equipment)
    await connection.execute(update(der_record).where(der_record.c.nmi == outcome.nmi).values(**values))
