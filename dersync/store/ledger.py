"""The submission ledger: every request dersync sent to AEMO, appended, never changed (except that
bodies and then rows are pruned after their retention).

Rows arrive with the outcomes they belong to (in the same transaction, `append`), are read per
NMI newest first (`for_nmi`), one at a time with the body (`entry`), or streamed by time for an
auditor (`between`, keyset paging: flat memory whatever the period).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Dialect, and_, delete, desc, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dersync.store.tables import ledger_entry
from dersync.vocabulary import Part

#: The columns every reader gets (the body only by id).
_FIELDS = [c for c in ledger_entry.c if c.name != "body"]


class SentRequest(Protocol):
    """What the store needs of a request to append it (the AEMO client's record satisfies it)."""

    @property
    def sent_at(self) -> datetime: ...
    @property
    def answered_at(self) -> datetime | None: ...
    @property
    def nmi(self) -> str | None: ...
    @property
    def api(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def transaction_id(self) -> str | None: ...
    @property
    def codes(self) -> Sequence[str]: ...
    @property
    def attempt(self) -> int: ...
    @property
    def pass_id(self) -> int | None: ...
    @property
    def body_sha256(self) -> str | None: ...
    @property
    def body_gzip(self) -> bytes | None: ...


async def append(connection: AsyncConnection, requests: Sequence[SentRequest]) -> None:
    """One executemany INSERT (SQLite) or one COPY (PostgreSQL) for any number of requests.

    Every request a pass sends is appended here, in the transaction of its outcome: each row goes
    to the driver as a tuple built straight from the request, converted only where its column's
    type converts (SQLite's times), through a statement compiled once per dialect. SQLAlchemy's
    general executemany path built every row's parameters afresh: about 25% more CPU per row.
    """
    if not requests:
        return
    insert = _insert_for(connection.dialect)
    rows = [insert.row(r) for r in requests]
    if insert.copy:
        await _copy_in(connection, rows)
    else:
        await connection.exec_driver_sql(insert.sql, rows)


async def _copy_in(connection: AsyncConnection, rows: list[Any]) -> None:
    """The rows by asyncpg's COPY: PostgreSQL plans and executes no statement per row, a third
    less of the server's time per row than an executemany INSERT (a pass's server shares the
    machine's cores with it; see benchmarks/README.md).

    COPY goes to the driver's connection past SQLAlchemy, so two things SQLAlchemy would do are
    done here: its transaction is begun first (it begins lazily, with its first statement: the
    rows must commit or roll back with the outcomes they belong to), and the driver's errors are
    raised as SQLAlchemy's, as an INSERT's would be (the store reports them as unavailable).
    """
    import asyncpg

    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None:  # pragma: no cover - a checked-out connection always has one
        raise RuntimeError("the store's connection has no driver connection")
    if not driver.is_in_transaction():
        await connection.exec_driver_sql("SELECT 1")
    try:
        await driver.copy_records_to_table(ledger_entry.name, records=rows, columns=_APPENDED)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise DBAPIError(f"COPY {ledger_entry.name}", None, exc) from exc


#: The columns an append writes, in the order of `_values` (checked against the table below).
_APPENDED = ("sent_at", "answered_at", "nmi", "part", "method", "path", "status", "error", "transaction_id", "codes",
             "attempt", "pass_id", "body_sha256", "body")
if set(_APPENDED) != {c.name for c in ledger_entry.c if c.name != "id"}:  # pragma: no cover - a schema change
    raise RuntimeError("ledger._APPENDED no longer names the ledger_entry table's columns")


def _values(r: SentRequest) -> tuple[Any, ...]:
    return (r.sent_at, r.answered_at, r.nmi, r.api, r.method, r.path, r.status, r.error, r.transaction_id,
            json.dumps(list(r.codes)) if r.codes else "[]", r.attempt, r.pass_id, r.body_sha256, r.body_gzip)


@dataclass(frozen=True)
class _Insert:
    """The ledger's INSERT as one dialect's driver takes it: the SQL, whether the driver takes its
    parameters by name, where each positional parameter is in `_values` (None: in that order
    already), and the conversions of the values whose column type has one."""

    sql: str
    named: bool
    reorder: tuple[int, ...] | None
    conversions: tuple[tuple[int, Callable[[Any], Any]], ...]
    #: By COPY (asyncpg), rows in `_APPENDED`'s order, rather than by `sql`.
    copy: bool = False

    def row(self, r: SentRequest) -> tuple[Any, ...] | dict[str, Any]:
        values = _values(r)
        if self.conversions:
            converted = list(values)
            for i, convert in self.conversions:
                converted[i] = convert(converted[i])
            values = tuple(converted)
        if self.named:
            return dict(zip(_APPENDED, values, strict=True))
        if self.reorder is None:
            return values
        return tuple(values[i] for i in self.reorder)


_INSERTS: dict[tuple[str, str], _Insert] = {}


def _insert_for(dialect: Dialect) -> _Insert:
    key = (dialect.name, dialect.driver)
    if key not in _INSERTS:
        # inline(): no RETURNING of the new ids (PostgreSQL would compute one per row for nothing).
        compiled = ledger_entry.insert().inline().compile(dialect=dialect, column_keys=list(_APPENDED))
        conversions = tuple((i, convert) for i, name in enumerate(_APPENDED)
                            if (convert := ledger_entry.c[name].type.dialect_impl(dialect).bind_processor(dialect)))
        positions = (tuple(_APPENDED.index(name) for name in compiled.positiontup)
                     if compiled.positiontup is not None else None)
        copy = dialect.driver == "asyncpg"
        _INSERTS[key] = _Insert(
            sql=compiled.string,
            named=positions is None and not copy,
            reorder=None if copy or positions is None or positions == tuple(range(len(_APPENDED))) else positions,
            conversions=conversions,
            copy=copy,
        )
    return _INSERTS[key]


def answered_writes(requests: Sequence[SentRequest]) -> dict[tuple[str, str], datetime]:
    """The answer time of each successful installation write in `requests`, by (NMI,
    transactionId), earliest first wins: what the compliance lookup would read back from rows
    just appended (`compliance.record_first`), without reading them."""
    found: dict[tuple[str, str], datetime] = {}
    for r in requests:
        if r.api == Part.INSTALLATION and r.status is not None and 200 <= r.status < 300 \
                and r.answered_at is not None and r.nmi is not None and r.transaction_id:
            key = (r.nmi, r.transaction_id)
            if key not in found or r.answered_at < found[key]:
                found[key] = r.answered_at
    return found


def as_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ledger row with its pinned field names (scripts rely on them): id, sentAt, answeredAt,
    nmi, part, method, path, status, transactionId, codes, attempt, passId, bodySha256; plus
    error (why no answer came). Times are UTC datetimes: commands show them in the operator's zone."""
    return {
        "id": row["id"],
        "sentAt": _utc(row["sent_at"]),
        "answeredAt": _utc(row["answered_at"]),
        "nmi": row["nmi"],
        "part": row["part"],
        "method": row["method"],
        "path": row["path"],
        "status": row["status"],
        "transactionId": row["transaction_id"],
        "codes": json.loads(row["codes"] or "[]"),
        "attempt": row["attempt"],
        "passId": row["pass_id"],
        "bodySha256": row["body_sha256"],
        "error": row["error"],
    }


async def for_nmi(connection: AsyncConnection, nmi: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The NMI's requests, newest first."""
    query = select(*_FIELDS).where(ledger_entry.c.nmi == nmi).order_by(desc(ledger_entry.c.id))
    if limit is not None:
        query = query.limit(limit)
    return [as_row(dict(row._mapping)) for row in await connection.execute(query)]


async def body_of(connection: AsyncConnection, entry_id: int) -> tuple[dict[str, Any], bytes | None] | None:
    """One row and its body, decompressed (None: pruned or never kept); None when no such row."""
    row = (await connection.execute(select(ledger_entry).where(ledger_entry.c.id == entry_id))).first()
    if row is None:
        return None
    packed = row._mapping["body"]
    return as_row(dict(row._mapping)), (gzip.decompress(packed) if packed is not None else None)


async def between(engine: AsyncEngine, start: datetime, end: datetime,
                  batch_size: int = 5000) -> AsyncIterator[list[dict[str, Any]]]:
    """Rows sent in [start, end), oldest first, a batch per short read (flat memory)."""
    # Times are stored in UTC, and SQLite compares them as text: bounds in another zone would
    # be compared by their wall-clock digits.
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    after = 0
    while True:
        async with engine.connect() as connection:
            result = await connection.execute(
                select(*_FIELDS)
                .where(and_(ledger_entry.c.sent_at >= start, ledger_entry.c.sent_at < end, ledger_entry.c.id > after))
                .order_by(ledger_entry.c.id).limit(batch_size)
            )
            batch = [as_row(dict(row._mapping)) for row in result]
        if not batch:
            return
        yield batch
        after = batch[-1]["id"]


async def prune(connection: AsyncConnection, *, rows_before: datetime, bodies_before: datetime,
                batch_size: int) -> tuple[int, int]:
    """Delete up to `batch_size` rows sent before `rows_before` and drop up to `batch_size` bodies
    sent before `bodies_before`; (rows deleted, bodies dropped). Small batches, so that pruning a
    backlog never holds the store for long."""
    rows_before, bodies_before = rows_before.astimezone(UTC), bodies_before.astimezone(UTC)
    old_rows = select(ledger_entry.c.id).where(ledger_entry.c.sent_at < rows_before).limit(batch_size)
    deleted = await connection.execute(delete(ledger_entry).where(ledger_entry.c.id.in_(old_rows.scalar_subquery())))
    old_bodies = (select(ledger_entry.c.id)
                  .where(and_(ledger_entry.c.sent_at < bodies_before, ledger_entry.c.body.is_not(None)))
                  .limit(batch_size))
    dropped = await connection.execute(
        update(ledger_entry).where(ledger_entry.c.id.in_(old_bodies.scalar_subquery())).values(body=None))
    return deleted.rowcount or 0, dropped.rowcount or 0


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands times back naive; they are stored in UTC."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
