"""What the operator console reads: the exceptions inbox (filtered, newest first, paged, counted
by code, streamed for CSV), one NMI's whole story, and the overview's counts.

Every query here is answered from an index at a million records and 100,000 exceptions (see
migration 0008 and `benchmarks/console.py`): the inbox pages by `(status, first_seen_at, id)`,
counts by code read `(status, level, code)`, and parked records have a partial index.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, desc, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from dersync.store.tables import der_record, equipment_id, sync_pass
from dersync.store.tables import validation_exception as vx
from dersync.store.users import utc
from dersync.store.validation_exceptions import _item as exception_item
from dersync.vocabulary import ExceptionAge, ExceptionStatus, Level, PassStatus

#: How far back each age choice reaches (ExceptionAge.OLDER: further back than a month).
_AGES = {ExceptionAge.DAY: timedelta(days=1), ExceptionAge.WEEK: timedelta(days=7),
         ExceptionAge.MONTH: timedelta(days=30), ExceptionAge.OLDER: timedelta(days=30)}


@dataclass(frozen=True)
class ExceptionFilter:
    """The inbox's filter; also how a bulk re-drive names its NMIs. Every field is optional."""

    level: Level | None = None
    code: str | None = None
    status: ExceptionStatus | None = None
    nmi: str | None = None
    nmi_prefix: str | None = None
    age: ExceptionAge | None = None

    def conditions(self, now: datetime, dialect: str) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.status is not None:
            found.append(vx.c.status == self.status)
        if self.level is not None:
            found.append(vx.c.level == self.level)
        if self.code is not None:
            found.append(vx.c.code == self.code)
        if self.nmi is not None:
            found.append(vx.c.nmi == self.nmi)
        if self.nmi_prefix:
            found.append(starts_with(vx.c.nmi, self.nmi_prefix, dialect))
        if self.age is not None:
            edge = now - _AGES[self.age]
            found.append(vx.c.first_seen_at < edge if self.age == ExceptionAge.OLDER else vx.c.first_seen_at >= edge)
        return found

    def as_dict(self) -> dict[str, str]:
        """The fields that are set, as the API and the action log spell them."""
        names = {"nmi_prefix": "nmiPrefix"}
        return {names.get(key, key): str(value) for key, value in asdict(self).items() if value is not None}

    @property
    def empty(self) -> bool:
        return not self.as_dict()


def starts_with(column: Any, prefix: str, dialect: str) -> ColumnElement[bool]:
    """`column` begins with `prefix`, in a form the database answers from an index on it: a range
    on SQLite (binary collation: code point order), LIKE on PostgreSQL (which uses the index under
    the C collation and reads correctly under any other)."""
    if dialect == "sqlite":
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return and_(column >= prefix, column < upper)
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped + "%", escape="\\")  # type: ignore[no-any-return]


_NEWEST_FIRST = (desc(vx.c.first_seen_at), desc(vx.c.id))


async def exception_page(connection: AsyncConnection, flt: ExceptionFilter, now: datetime, *, page: int,
                         page_size: int) -> tuple[list[dict[str, Any]], int]:
    """One page of matching exceptions, newest first (as `exceptions list --format json` shows
    each), and how many match in all."""
    conditions = flt.conditions(now, connection.dialect.name)
    total = int((await connection.execute(select(func.count()).select_from(vx).where(*conditions))).scalar_one())
    rows = await connection.execute(select(vx).where(*conditions).order_by(*_NEWEST_FIRST)
                                    .limit(page_size).offset((page - 1) * page_size))
    return [exception_item(dict(row._mapping)) for row in rows], total


async def exception_batches(engine: AsyncEngine, flt: ExceptionFilter, now: datetime,
                            batch_size: int = 2000) -> AsyncIterator[list[dict[str, Any]]]:
    """Every matching exception, newest first, a batch per short read (keyset paging: a CSV of
    100,000 rows costs flat memory and never holds a transaction open)."""
    after: tuple[datetime, int] | None = None
    while True:
        async with engine.connect() as connection:
            conditions = flt.conditions(now, connection.dialect.name)
            if after is not None:
                seen, last_id = after
                conditions.append(or_(vx.c.first_seen_at < seen, and_(vx.c.first_seen_at == seen, vx.c.id < last_id)))
            rows = [dict(row._mapping) for row in await connection.execute(
                select(vx).where(*conditions).order_by(*_NEWEST_FIRST).limit(batch_size))]
        if not rows:
            return
        yield [exception_item(row) for row in rows]
        after = (rows[-1]["first_seen_at"], rows[-1]["id"])


async def code_counts(connection: AsyncConnection, flt: ExceptionFilter, now: datetime,
                      limit: int = 200) -> list[dict[str, Any]]:
    """Matching exceptions grouped by level and code, the largest group first: one bad inverter
    model shows as one line of thousands of 2023s."""
    groups = await code_groups(connection, flt, now)
    return await with_titles(connection, groups[:limit], flt, now)


async def code_groups(connection: AsyncConnection, flt: ExceptionFilter, now: datetime) -> list[dict[str, Any]]:
    """Every (level, code) group of matching exceptions with its count, largest first (read from
    the (status, level, code) index alone)."""
    count = func.count().label("count")
    rows = await connection.execute(
        select(vx.c.level, vx.c.code, count).where(*flt.conditions(now, connection.dialect.name))
        .group_by(vx.c.level, vx.c.code).order_by(desc(count), vx.c.level, vx.c.code))
    return [{"level": r.level, "code": r.code, "title": None, "count": int(r._mapping["count"])} for r in rows]


async def with_titles(connection: AsyncConnection, groups: list[dict[str, Any]], flt: ExceptionFilter,
                      now: datetime) -> list[dict[str, Any]]:
    """The groups with the title of one of their exceptions (one indexed read per group shown:
    a title read with every counted row would not come from the index)."""
    conditions = flt.conditions(now, connection.dialect.name)
    for group in groups:
        group["title"] = (await connection.execute(
            select(vx.c.title).where(*conditions, vx.c.level == group["level"], vx.c.code == group["code"])
            .limit(1))).scalar()
    return groups


def by_level(groups: list[dict[str, Any]]) -> dict[str, int]:
    """Counts by level (every level present) from `code_groups`."""
    counts = {level.value: 0 for level in Level}
    for group in groups:
        counts[group["level"]] = counts.get(group["level"], 0) + group["count"]
    return counts


async def selected_nmis(connection: AsyncConnection, flt: ExceptionFilter, now: datetime) -> list[str]:
    """The NMIs the store holds that have an exception matching `flt`, in NMI order."""
    rows = await connection.execute(
        select(vx.c.nmi).distinct().join(der_record, der_record.c.nmi == vx.c.nmi)
        .where(*flt.conditions(now, connection.dialect.name)).order_by(vx.c.nmi))
    return [nmi for (nmi,) in rows]


# --- one NMI -------------------------------------------------------------------------------------

_RECORD_FIELDS = ("nmi", "revision", "due", "sync_state", "nmi_at_aemo", "inst_at_aemo", "attempt_started_at",
                  "last_attempt_at", "last_synced_at", "last_transaction_id", "last_error", "created_at",
                  "parked_at", "parked_by", "parked_reason")


async def record_view(connection: AsyncConnection, nmi: str) -> dict[str, Any] | None:
    """The record's content (parsed JSON) and sync state, or None when the store does not hold it."""
    row = (await connection.execute(select(der_record).where(der_record.c.nmi == nmi))).first()
    if row is None:
        return None
    m = row._mapping
    view: dict[str, Any] = {name: m[name] for name in _RECORD_FIELDS}
    for name in ("attempt_started_at", "last_attempt_at", "last_synced_at", "created_at", "parked_at"):
        view[name] = utc(view[name]) if view[name] is not None else None
    view["due"] = bool(view["due"])
    view["parked"] = view["parked_at"] is not None
    view["nmi_details"] = _parsed(m["nmi_details"])
    view["installation"] = _parsed(m["installation"])
    view["nmi_details_json"], view["installation_json"] = m["nmi_details"], m["installation"]
    return view


def _parsed(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # an ETL wrote something that is not JSON: shown as it is (the pass reports it)


async def equipment_of(connection: AsyncConnection, nmi: str) -> list[dict[str, Any]]:
    """Equipment with the operator's id and AEMO's, and AEMO's stage, connections first."""
    rows = await connection.execute(
        select(equipment_id).where(equipment_id.c.nmi == nmi)
        .order_by(equipment_id.c.nsp_connection_id, equipment_id.c.nsp_device_id))
    return [{"nspConnectionId": r.nsp_connection_id, "nspDeviceId": r.nsp_device_id or None,
             "kind": "device" if r.nsp_device_id else "connection", "aemoId": r.aemo_id,
             "installationStage": r.installation_stage, "updated": utc(r.updated_at)} for r in rows]


async def exceptions_of(connection: AsyncConnection, nmi: str, limit: int = 500) -> list[dict[str, Any]]:
    """The NMI's exceptions, open and resolved, newest first."""
    rows = await connection.execute(select(vx).where(vx.c.nmi == nmi).order_by(*_NEWEST_FIRST).limit(limit))
    return [exception_item(dict(row._mapping)) for row in rows]


# --- the overview --------------------------------------------------------------------------------


async def recent_passes(connection: AsyncConnection, kind: str, limit: int) -> list[dict[str, Any]]:
    """The last passes of a kind, newest first, with their duration and counts."""
    rows = await connection.execute(select(sync_pass).where(sync_pass.c.kind == kind)
                                    .order_by(desc(sync_pass.c.id)).limit(limit))
    return [_pass(dict(row._mapping)) for row in rows]


async def running_passes(connection: AsyncConnection) -> list[dict[str, Any]]:
    rows = await connection.execute(select(sync_pass).where(sync_pass.c.status == PassStatus.RUNNING)
                                    .order_by(desc(sync_pass.c.id)).limit(5))
    return [_pass(dict(row._mapping)) for row in rows]


def _pass(m: Mapping[str, Any]) -> dict[str, Any]:
    started = utc(m["started_at"])
    finished = utc(m["finished_at"]) if m["finished_at"] is not None else None
    return {"id": m["id"], "kind": m["kind"], "status": m["status"], "started": started, "finished": finished,
            "seconds": round((finished - started).total_seconds(), 1) if finished is not None else None,
            "summary": json.loads(m["summary"]) if m["summary"] else {}, "error": m["error"]}


async def parked_records(connection: AsyncConnection, limit: int = 200) -> list[dict[str, Any]]:
    rows = await connection.execute(
        select(der_record.c.nmi, der_record.c.parked_at, der_record.c.parked_by, der_record.c.parked_reason,
               der_record.c.due)
        .where(der_record.c.parked_at.is_not(None)).order_by(desc(der_record.c.parked_at)).limit(limit))
    return [{"nmi": r.nmi, "parkedAt": utc(r.parked_at), "parkedBy": r.parked_by, "reason": r.parked_reason,
             "due": bool(r.due)} for r in rows]
