"""Compliance deadlines, the store's side: each AC connection's first acceptance at AEMO, recorded
as it happens, and the facts a compliance report is judged from, streamed in NMI order.

A first acceptance is written in the transaction that records the outcome of the accepting write
(`record_first`, called by `outcomes.record_outcomes`), once per (NMI, nspConnectionId): an
insert that does nothing when a row is there, so a later rejection or acceptance never moves it.
Its time is the one the rule says (`AcceptanceRule`): for a connection dersync's request added,
the `answered_at` of that request's ledger row (stored in the same transaction, just before), or
the time the answer was read where the ledger has no such row; for one AEMO held before the
request, AEMO's own `recordCreationDate` for it, as the answer carried it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping, and_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dersync.store.tables import connection_acceptance as acceptance
from dersync.store.tables import der_record, ledger_entry
from dersync.store.tables import validation_exception as vx
from dersync.vocabulary import AcceptanceRule, ExceptionStatus, Level, Part

#: Exception levels that keep an installation from being accepted (a second-level exception is
#: found on data AEMO accepted: it blocks nothing).
BLOCKING_LEVELS = (Level.LOCAL, Level.SCHEMA, Level.FIRST)
#: NMIs per `IN (...)`: well inside SQLite's and asyncpg's limits on bound parameters.
_IN_CHUNK = 500


@dataclass(frozen=True)
class Accepted:
    """An AC connection AEMO accepted in its answer to an installation write (carried from the
    answer to the store on `PartOutcome.accepted`)."""

    nsp_connection_id: str
    rule: AcceptanceRule
    #: AEMO's recordCreationDate for the connection (rule `held_at_aemo`); None for `answered`.
    record_created_at: datetime | None = None


@dataclass(frozen=True)
class AcceptedPart:
    """One accepted installation write of an NMI, as `record_first` needs it."""

    nmi: str
    transaction_id: str | None
    #: When the answer was read (used only where the ledger holds no row for the exchange).
    answered_at: datetime | None
    accepted: Sequence[Accepted]


@dataclass(frozen=True)
class FirstAcceptance:
    accepted_at: datetime
    rule: AcceptanceRule
    transaction_id: str | None


@dataclass(frozen=True)
class InstallationFacts:
    """What a compliance report judges one NMI's connections from."""

    nmi: str
    installation: str
    #: First acceptances by nspConnectionId.
    acceptances: Mapping[str, FirstAcceptance]
    #: Open installation exceptions that block acceptance, as (nspConnectionId or None, code),
    #: local before schema before first level, oldest first within a level.
    blocking: Sequence[tuple[str | None, str]]


async def record_first(connection: AsyncConnection, parts: Sequence[AcceptedPart], now: datetime, *,
                       answered: Mapping[tuple[str, str], datetime] | None = None) -> None:
    """Record the first acceptance of every connection in `parts` that has none yet (call inside
    the outcomes' transaction, after the ledger rows of the same requests were appended).

    `answered`: the ledger's answer times of the requests appended in this transaction, by (NMI,
    transactionId), as `ledger.answered_writes` gives them; the ledger is read only for the
    others (rows stored earlier), which saves a query per transaction in a pass.

    Within `parts` (in the order the outcomes were recorded) the first mention of a connection
    wins. At most three statements, whatever the count.
    """
    first: dict[tuple[str, str], tuple[Accepted, AcceptedPart]] = {}
    for part in parts:
        for item in part.accepted:
            first.setdefault((part.nmi, item.nsp_connection_id), (item, part))
    if not first:
        return
    known = await _known(connection, sorted({nmi for nmi, _ in first}))
    new = {key: found for key, found in first.items() if key not in known}
    if not new:
        return
    exchanges = {(part.nmi, part.transaction_id) for item, part in new.values()
                 if item.rule == AcceptanceRule.ANSWERED and part.transaction_id}
    in_memory = answered or {}
    answered = {**await _answered_at(connection, sorted(e for e in exchanges if e not in in_memory)), **in_memory}
    rows = []
    for (nmi, nsp_connection), (item, part) in new.items():
        if item.rule == AcceptanceRule.HELD_AT_AEMO and item.record_created_at is not None:
            at = item.record_created_at
        else:
            at = answered.get((nmi, part.transaction_id or "")) or part.answered_at or now
        rows.append({"nmi": nmi, "nsp_connection_id": nsp_connection, "accepted_at": at.astimezone(UTC),
                     "rule": item.rule, "transaction_id": part.transaction_id, "recorded_at": now})
    insert = (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(acceptance)
    await connection.execute(insert.on_conflict_do_nothing(index_elements=[acceptance.c.nmi,
                                                                           acceptance.c.nsp_connection_id]), rows)


async def record_held(connection: AsyncConnection, held: Mapping[str, Mapping[str, Any]], now: datetime) -> int:
    """Record, from AEMO's installations as read back (`held`, by NMI), the first acceptance of
    every AC connection AEMO holds that has none yet, at AEMO's recordCreationDate (rule
    `held_at_aemo`, no transactionId): for connections accepted before first acceptances were
    recorded, or whose first write since was rejected. Returns how many were recorded."""
    found = [
        AcceptedPart(nmi, None, None, [Accepted(str(c["nspConnectionId"]), AcceptanceRule.HELD_AT_AEMO, created)])
        for nmi, installation in held.items()
        for c in installation.get("acConnections") or []
        if isinstance(c, dict) and c.get("nspConnectionId") is not None
        and (created := aemo_time(c.get("recordCreationDate"))) is not None
    ]
    known = await _known(connection, sorted({part.nmi for part in found}))
    new = [part for part in found if (part.nmi, part.accepted[0].nsp_connection_id) not in known]
    await record_first(connection, new, now)
    return len({(part.nmi, part.accepted[0].nsp_connection_id) for part in new})


def aemo_time(value: Any) -> datetime | None:
    """One of AEMO's date-time fields (`2026-06-10T02:00:00.000Z`), or None when unreadable; one
    without an offset is read as UTC."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _known(connection: AsyncConnection, nmis: Sequence[str]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for start in range(0, len(nmis), _IN_CHUNK):
        rows = await connection.execute(select(acceptance.c.nmi, acceptance.c.nsp_connection_id)
                                        .where(acceptance.c.nmi.in_(nmis[start : start + _IN_CHUNK])))
        found.update((nmi, nsp_connection) for nmi, nsp_connection in rows)
    return found


async def _answered_at(connection: AsyncConnection,
                       exchanges: Sequence[tuple[str, str | None]]) -> dict[tuple[str, str], datetime]:
    """The ledger's `answered_at` of each successful installation write (nmi, transactionId):
    read through the ledger's index on nmi."""
    found: dict[tuple[str, str], datetime] = {}
    for start in range(0, len(exchanges), _IN_CHUNK):
        chunk = exchanges[start : start + _IN_CHUNK]
        rows = await connection.execute(
            select(ledger_entry.c.nmi, ledger_entry.c.transaction_id, func.min(ledger_entry.c.answered_at))
            .where(and_(ledger_entry.c.nmi.in_(sorted({nmi for nmi, _ in chunk})),
                        ledger_entry.c.transaction_id.in_(sorted({tid for _, tid in chunk if tid})),
                        ledger_entry.c.part == Part.INSTALLATION,
                        ledger_entry.c.status >= 200, ledger_entry.c.status < 300,
                        ledger_entry.c.answered_at.is_not(None)))
            .group_by(ledger_entry.c.nmi, ledger_entry.c.transaction_id)
        )
        for nmi, transaction_id, answered_at in rows:
            found[(nmi, transaction_id)] = _utc(answered_at)
    return found


async def first_acceptances(connection: AsyncConnection, nmis: Sequence[str]) -> dict[str, dict[str, FirstAcceptance]]:
    """The recorded first acceptances of these NMIs, by NMI and then nspConnectionId."""
    found: dict[str, dict[str, FirstAcceptance]] = {}
    for start in range(0, len(nmis), _IN_CHUNK):
        rows = await connection.execute(select(acceptance).where(acceptance.c.nmi.in_(nmis[start : start + _IN_CHUNK])))
        for row in rows:
            found.setdefault(row.nmi, {})[row.nsp_connection_id] = _acceptance(row._mapping)
    return found


async def installation_batches(engine: AsyncEngine, batch_size: int) -> AsyncIterator[list[InstallationFacts]]:
    """Every record holding an installation, in NMI order, `batch_size` at a time, with its
    connections' first acceptances and its open blocking exceptions: three short reads per batch
    (keyset paging; the other two read the batch's NMI range through their primary key and
    index), flat memory whatever the store's size, no transaction held while the caller works."""
    after = ""
    while True:
        async with engine.connect() as connection:
            records = (await connection.execute(
                select(der_record.c.nmi, der_record.c.installation)
                .where(and_(der_record.c.installation.is_not(None), der_record.c.nmi > after))
                .order_by(der_record.c.nmi).limit(batch_size)
            )).all()
            if not records:
                return
            low, high = records[0].nmi, records[-1].nmi
            accepted: dict[str, dict[str, FirstAcceptance]] = {}
            for row in await connection.execute(
                    select(acceptance).where(and_(acceptance.c.nmi >= low, acceptance.c.nmi <= high))):
                accepted.setdefault(row.nmi, {})[row.nsp_connection_id] = _acceptance(row._mapping)
            blocking: dict[str, list[tuple[int, int, str | None, str]]] = {}
            for row in await connection.execute(
                    select(vx.c.id, vx.c.nmi, vx.c.level, vx.c.nsp_connection_id, vx.c.code)
                    .where(and_(vx.c.nmi >= low, vx.c.nmi <= high, vx.c.part == Part.INSTALLATION,
                                vx.c.status == ExceptionStatus.OPEN, vx.c.level.in_(BLOCKING_LEVELS)))):
                rank = BLOCKING_LEVELS.index(Level(row.level))
                blocking.setdefault(row.nmi, []).append((rank, row.id, row.nsp_connection_id, row.code))
        yield [InstallationFacts(nmi=nmi, installation=text, acceptances=accepted.get(nmi, {}),
                                 blocking=[(nsp, code) for _, _, nsp, code in sorted(blocking.get(nmi, []))])
               for nmi, text in records]
        after = high


def _acceptance(row: RowMapping) -> FirstAcceptance:
    accepted_at = row["accepted_at"]
    transaction_id = row["transaction_id"]
    assert isinstance(accepted_at, datetime)
    return FirstAcceptance(accepted_at=_utc(accepted_at), rule=AcceptanceRule(str(row["rule"])),
                           transaction_id=None if transaction_id is None else str(transaction_id))


def _utc(value: datetime) -> datetime:
    """SQLite hands times back naive; they are stored in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
