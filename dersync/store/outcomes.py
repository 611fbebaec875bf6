"""Recording what happened to a record: sync state, exceptions and AEMO ids in one transaction.

A crash at any point therefore leaves a record either synced (with its transactionId) or still
due; never synced without the exceptions and ids that came with the answer. The first acceptance
of each AC connection (compliance deadlines) is recorded in the same transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Boolean, bindparam, case, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dersync.store.compliance import Accepted, AcceptedPart, record_first
from dersync.store.equipment import EquipmentId, save_ids
from dersync.store.tables import der_record
from dersync.store.validation_exceptions import PartExceptions, ValidationException, sync_many
from dersync.vocabulary import Level, Part, Result, SyncState


@dataclass(frozen=True)
class PartOutcome:
    """What became of one part (NMI details or installation) in this pass."""

    part: Part
    result: Result
    content_hash: str | None = None
    covered_levels: frozenset[Level] = frozenset()
    exceptions: Sequence[ValidationException] = ()
    at_aemo: bool | None = None
    transaction_id: str | None = None
    equipment: Sequence[EquipmentId] | None = None
    #: The AC connections AEMO accepted (an installation AEMO accepted), for their first acceptance.
    accepted: Sequence[Accepted] = ()
    #: When AEMO's answer was read (the ledger row of the request holds the exact answeredAt).
    answered_at: datetime | None = None


@dataclass(frozen=True)
class RecordOutcome:
    nmi: str
    revision: int
    parts: Sequence[PartOutcome] = field(default_factory=tuple)
    error: str | None = None

    @property
    def state(self) -> SyncState:
        results = {p.result for p in self.parts}
        if Result.RETRY in results:
            return SyncState.RETRY
        if Result.REJECTED in results:
            return SyncState.REJECTED
        return SyncState.SYNCED

    @property
    def transaction_id(self) -> str | None:
        ids = [p.transaction_id for p in self.parts if p.transaction_id]
        return ids[-1] if ids else None


_HASH_COLUMNS = {Part.NMI: ("nmi_synced_hash", "nmi_rejected_hash", "nmi_at_aemo"),
                 Part.INSTALLATION: ("inst_synced_hash", "inst_rejected_hash", "inst_at_aemo")}


async def record_outcomes(connection: AsyncConnection, outcomes: Sequence[RecordOutcome], now: datetime, *,
                          answered: Mapping[tuple[str, str], datetime] | None = None) -> None:
    """Record many records' outcomes with a handful of statements (call inside one transaction).
    `answered`: the answer times of the writes appended to the ledger in it (`record_first`).

    An NMI may appear more than once (a later outcome supersedes an earlier one): the outcomes
    are applied in rounds in which each NMI appears once, in their original order.
    """
    for round_ in _rounds(outcomes):
        await sync_many(connection, [PartExceptions(o.nmi, p.part, frozenset(p.covered_levels), tuple(p.exceptions))
                                     for o in round_ for p in o.parts], now)
        await save_ids(connection, {o.nmi: p.equipment for o in round_ for p in o.parts if p.equipment})
        await _update_records(connection, round_, now)
    await record_first(connection, [AcceptedPart(o.nmi, p.transaction_id, p.answered_at, p.accepted)
                                    for o in outcomes for p in o.parts if p.accepted], now, answered=answered)


def _rounds(outcomes: Sequence[RecordOutcome]) -> list[list[RecordOutcome]]:
    """An NMI's k-th outcome goes to round k."""
    rounds: list[list[RecordOutcome]] = []
    seen: Counter[str] = Counter()
    for outcome in outcomes:
        index = seen[outcome.nmi]
        seen[outcome.nmi] += 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(outcome)
    return rounds


async def _update_records(connection: AsyncConnection, outcomes: Sequence[RecordOutcome], now: datetime) -> None:
    """One executemany UPDATE per shape of change (which columns a record's outcome sets)."""
    shapes: dict[tuple[bool, tuple[str, ...]], list[dict[str, object]]] = {}
    for outcome in outcomes:
        values = _record_values(outcome, now)
        shapes.setdefault((outcome.state == SyncState.RETRY, tuple(sorted(values))), []).append(values)
    for (still_due, columns), rows in shapes.items():
        sets: dict[str, object] = {c: bindparam(c, type_=der_record.c[c].type)
                                   for c in columns if not c.startswith("b_")}
        # If the input changed while we worked (revision moved on), the row stays due for the next pass.
        sets["due"] = case((der_record.c.revision == bindparam("b_revision"), bindparam("b_still_due", type_=Boolean)),
                           else_=true())
        if not still_due:
            sets["attempt_started_at"] = None  # the write's fate is known; a retry keeps the mark
        statement = update(der_record).where(der_record.c.nmi == bindparam("b_nmi")).values(sets)
        await connection.execute(statement, rows)


def _record_values(outcome: RecordOutcome, now: datetime) -> dict[str, object]:
    """The columns this outcome sets, as executemany parameters (`b_` keys steer the statement)."""
    state = outcome.state
    still_due = state == SyncState.RETRY
    values: dict[str, object] = {
        "b_nmi": outcome.nmi,
        "b_revision": outcome.revision,
        "b_still_due": still_due,
        "sync_state": state,
        "last_attempt_at": now,
        "last_error": outcome.error,
    }
    if state == SyncState.SYNCED:
        values["last_synced_at"] = now
    if outcome.transaction_id:
        values["last_transaction_id"] = outcome.transaction_id
    for part in outcome.parts:
        synced_col, rejected_col, at_aemo_col = _HASH_COLUMNS[part.part]
        if part.result == Result.SYNCED:
            values[synced_col] = part.content_hash
            values[rejected_col] = None
        elif part.result == Result.REJECTED:
            values[rejected_col] = part.content_hash
        if part.at_aemo is not None:
            values[at_aemo_col] = part.at_aemo
    return values
