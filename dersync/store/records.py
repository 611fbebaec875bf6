"""Reading and writing the input side of `der_record`: imports in, due records out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from dersync.store.tables import der_record, der_record_tally
from dersync.vocabulary import SyncState, values

T = TypeVar("T")

#: Marks "this part was not in the input line": the stored part stays as it was.
ABSENT = object()


@dataclass(frozen=True)
class InputRow:
    """One import line: either part may be ABSENT (kept) or JSON text (replaces the stored part)."""

    nmi: str
    nmi_details: str | object = ABSENT
    installation: str | object = ABSENT


@dataclass(frozen=True)
class StoredRecord:
    """A record as the passes read it: its content and what the store knows of it at AEMO
    (the sync pass reads due ones, reconciliation every one with content)."""

    nmi: str
    nmi_details: str | None
    installation: str | None
    revision: int
    due: bool
    sync_state: str
    nmi_synced_hash: str | None
    inst_synced_hash: str | None
    nmi_rejected_hash: str | None
    inst_rejected_hash: str | None
    nmi_at_aemo: bool | None
    inst_at_aemo: bool | None
    attempt_started_at: datetime | None


COLUMNS = [der_record.c[name] for name in StoredRecord.__dataclass_fields__]


async def upsert_inputs(connection: AsyncConnection, rows: Sequence[InputRow]) -> None:
    """Insert or replace the given parts; the change trigger marks changed rows due."""
    groups: dict[tuple[bool, bool], list[dict[str, object]]] = {}
    for row in _last_per_nmi(rows):
        has_details = row.nmi_details is not ABSENT
        has_installation = row.installation is not ABSENT
        values: dict[str, object] = {"nmi": row.nmi}
        if has_details:
            values["nmi_details"] = row.nmi_details
        if has_installation:
            values["installation"] = row.installation
        groups.setdefault((has_details, has_installation), []).append(values)
    dialect = connection.dialect.name
    for (has_details, has_installation), rows_of_shape in groups.items():
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(der_record)
        parts = (("nmi_details", has_details), ("installation", has_installation))
        replaced = [name for name, present in parts if present]
        if replaced:
            statement = insert.on_conflict_do_update(
                index_elements=[der_record.c.nmi],
                set_={name: insert.excluded[name] for name in replaced},
            )
        else:
            statement = insert.on_conflict_do_nothing(index_elements=[der_record.c.nmi])
        await connection.execute(statement, rows_of_shape)


def _last_per_nmi(rows: Sequence[InputRow]) -> list[InputRow]:
    """Within one batch the last line for an NMI wins, part by part, as if applied in order."""
    merged: dict[str, InputRow] = {}
    for row in rows:
        previous = merged.get(row.nmi)
        if previous is None:
            merged[row.nmi] = row
            continue
        merged[row.nmi] = InputRow(
            nmi=row.nmi,
            nmi_details=row.nmi_details if row.nmi_details is not ABSENT else previous.nmi_details,
            installation=row.installation if row.installation is not ABSENT else previous.installation,
        )
    return list(merged.values())


async def nmi_batches(engine: AsyncEngine, columns: Sequence[Any], condition: Any, batch_size: int,
                      build: Callable[..., T]) -> AsyncIterator[list[T]]:
    """Stream matching rows in NMI order, one short read per batch (keyset paging: flat memory,
    no transaction held open while the caller works on a batch)."""
    after = ""
    while True:
        async with engine.connect() as connection:
            result = await connection.execute(
                select(*columns)
                .where(and_(condition, der_record.c.nmi > after))
                .order_by(der_record.c.nmi)
                .limit(batch_size)
            )
            batch = [build(**row._mapping) for row in result]
        if not batch:
            return
        yield batch
        after = batch[-1].nmi  # type: ignore[attr-defined]


#: What a sync pass takes: due, and not parked by a person (a parked record keeps its due flag,
#: so that unparking it hands it back to the next pass). Written with the due test first, as
#: the partial index on due records names it (SQLite matches the index's condition as written).
DUE_NOW = and_(der_record.c.due, der_record.c.parked_at.is_(None))


def due_batches(engine: AsyncEngine, batch_size: int) -> AsyncIterator[list[StoredRecord]]:
    """Due records that are not parked, in NMI order, `batch_size` at a time."""
    return nmi_batches(engine, COLUMNS, DUE_NOW, batch_size, StoredRecord)


async def mark_attempts(connection: AsyncConnection, nmis: Sequence[str], now: datetime) -> None:
    """Note that writes are about to go out, so a crash leaves a trace to check at AEMO."""
    if nmis:
        await connection.execute(
            update(der_record).where(der_record.c.nmi.in_(nmis)).values(attempt_started_at=now)
        )


async def mark_due(connection: AsyncConnection, nmis: Sequence[str], *, forget_synced: bool) -> int:
    """Make records due again (reconciliation repair): the next pass pushes the store's version."""
    values: dict[str, object] = {"due": True}
    if forget_synced:
        values.update(nmi_synced_hash=None, inst_synced_hash=None, nmi_rejected_hash=None,
                      inst_rejected_hash=None, sync_state="pending")
    result = await connection.execute(update(der_record).where(der_record.c.nmi.in_(nmis)).values(**values))
    return result.rowcount or 0


async def redrive(connection: AsyncConnection, nmis: Sequence[str], *, only_left_due: bool = False) -> int:
    """Make records due as if their content were new (a person's re-drive): the hashes of what
    AEMO accepted or rejected are forgotten, so the next pass sends them even though nothing
    changed, and `revision` moves on, so that a pass holding the old revision leaves them due.
    What the store knows of them at AEMO (held or not, equipment ids) is kept: the pass updates
    what AEMO holds, with AEMO's ids, and never creates equipment twice. `only_left_due`: see
    `actions.redrive_again`."""
    if not nmis:
        return 0
    chosen: ColumnElement[bool] = der_record.c.nmi.in_(nmis)
    if only_left_due:
        # A pass recorded an answer for them (synced or rejected) yet left them due: the answer
        # was for the revision before the re-drive. Not parked ones (no pass takes them), not
        # ones left to retry (the next pass sends them anyway).
        chosen = and_(chosen, der_record.c.due, der_record.c.parked_at.is_(None),
                      der_record.c.sync_state.in_([SyncState.SYNCED, SyncState.REJECTED]))
    result = await connection.execute(
        update(der_record).where(chosen).values(
            due=True, nmi_synced_hash=None, inst_synced_hash=None, nmi_rejected_hash=None, inst_rejected_hash=None,
            sync_state=SyncState.PENDING, revision=der_record.c.revision + 1)
    )
    return result.rowcount or 0


async def load_records(connection: AsyncConnection, nmis: Sequence[str]) -> list[StoredRecord]:
    """Fresh copies of chosen records (a retry round re-reads what it retries); a record parked
    meanwhile is left out, as the pass's next batch would leave it out."""
    result = await connection.execute(
        select(*COLUMNS).where(der_record.c.nmi.in_(nmis), der_record.c.parked_at.is_(None))
        .order_by(der_record.c.nmi)
    )
    return [StoredRecord(**row._mapping) for row in result]


async def count_due(connection: AsyncConnection) -> int:
    """Records the next pass will take (due and not parked)."""
    return int((await connection.execute(select(func.count()).where(DUE_NOW))).scalar_one())


async def count_parked(connection: AsyncConnection) -> int:
    return int((await connection.execute(
        select(func.count()).where(der_record.c.parked_at.is_not(None)))).scalar_one())


#: Tally rows (PostgreSQL's deltas) beyond which a reader folds them together.
TALLY_COMPACT_AT = 500


async def state_counts(connection: AsyncConnection) -> dict[str, int]:
    """Records by sync state, every state present (a state with none reads 0 on a dashboard)."""
    return (await tally(connection))[0]


async def tally(connection: AsyncConnection) -> tuple[dict[str, int], int]:
    """Records by sync state from the tally the triggers keep (migration 0008), exact and read
    in a few rows instead of a million; and how many tally rows were read (see compact_tally)."""
    rows = await connection.execute(
        select(der_record_tally.c.sync_state, func.sum(der_record_tally.c.n), func.count())
        .group_by(der_record_tally.c.sync_state))
    counts = dict.fromkeys(values(SyncState), 0)
    read = 0
    for state, total, deltas in rows:
        read += int(deltas)
        if int(total) or state in counts:
            counts[state] = int(total)
    return counts, read


async def compact_tally(connection: AsyncConnection) -> None:
    """Fold PostgreSQL's tally deltas into one row per state, in one statement: rows that
    concurrent transactions add meanwhile are not in its snapshot and stay, so the sums stay
    exact. (SQLite's triggers keep one row per state already.)"""
    if connection.dialect.name != "postgresql":
        return
    await connection.execute(text(
        "WITH moved AS (DELETE FROM der_record_tally RETURNING sync_state, n) "
        "INSERT INTO der_record_tally (sync_state, n) SELECT sync_state, sum(n) FROM moved GROUP BY sync_state "
        "HAVING sum(n) <> 0"))
