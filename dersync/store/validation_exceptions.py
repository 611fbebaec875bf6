"""Validation exceptions (AEMO's word, not Python's): what AEMO or local validation said is wrong
about a record, kept until it goes away.

An exception is identified by where it points (NMI, part, level, code, field, equipment), not
by its wording, so a rejection repeated on every push is one open row whose `last_seen_at`
moves; an exception that no longer appears after a push that could have reported it is resolved.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dersync.store.tables import validation_exception as vx
from dersync.vocabulary import ExceptionStatus, Level


@dataclass(frozen=True)
class ValidationException:
    """One validation exception as a push (or local validation) reported it."""

    level: Level
    code: str
    detail: str
    title: str | None = None
    field: str | None = None
    transaction_id: str | None = None
    nsp_connection_id: str | None = None
    connection_id: int | None = None
    nsp_device_id: str | None = None
    device_id: int | None = None
    raw: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False)

    def key(self) -> tuple[str, str, str, str, str]:
        return (self.level, self.code, self.field or "", self.nsp_connection_id or "",
                self.nsp_device_id or "")


@dataclass(frozen=True)
class PartExceptions:
    """What one push of one part (NMI details or installation) said about it."""

    nmi: str
    part: str
    covered_levels: frozenset[str]
    exceptions: Sequence[ValidationException]


async def sync_many(connection: AsyncConnection, items: Sequence[PartExceptions], now: datetime) -> None:
    """Make the open exceptions of each (nmi, part) at its covered levels equal to its findings,
    with a fixed number of statements whatever the count.

    A pass records its outcomes a few dozen at a time; one SELECT and one statement per kind of
    change keeps that cost flat (statement round trips, not rows, were the pass's bottleneck).
    Each (nmi, part) may appear once.
    """
    items = [item for item in items if item.covered_levels or item.exceptions]
    if not items:
        return
    existing = await _open_rows(connection, sorted({item.nmi for item in items}))
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    stale: list[int] = []
    for item in items:
        wanted: dict[tuple[str, ...], ValidationException] = {}
        for exception in item.exceptions:
            wanted.setdefault(exception.key(), exception)
        levels = set(item.covered_levels) | {f.level for f in wanted.values()}
        candidates = {key: row_id for key, row_id in existing.get((item.nmi, item.part), {}).items()
                      if key[0] in levels}
        for key, finding in wanted.items():
            if key in candidates:
                updates.append({"b_id": candidates.pop(key), "last_seen_at": now, **_values(finding)})
            else:
                inserts.append({"nmi": item.nmi, "part": item.part, "status": ExceptionStatus.OPEN,
                                "first_seen_at": now,
                                "last_seen_at": now, **_values(finding)})
        stale.extend(row_id for key, row_id in candidates.items() if key[0] in item.covered_levels)
    if updates:
        # No .values(): SQLAlchemy sets the columns named by the parameters' keys.
        await connection.execute(update(vx).where(vx.c.id == bindparam("b_id")), updates)
    if inserts:
        await connection.execute(vx.insert(), inserts)
    for start in range(0, len(stale), _IN_CHUNK):
        await connection.execute(update(vx).where(vx.c.id.in_(stale[start : start + _IN_CHUNK]))
                                 .values(status=ExceptionStatus.RESOLVED, resolved_at=now))


#: Ids per `IN (...)`: well inside SQLite's and asyncpg's limits on bound parameters.
_IN_CHUNK = 1000


OpenRows = dict[tuple[str, str], dict[tuple[str, ...], int]]


async def _open_rows(connection: AsyncConnection, nmis: Sequence[str]) -> OpenRows:
    """Open exceptions of these NMIs, by (nmi, part) and then by `ValidationException.key()`."""
    found: dict[tuple[str, str], dict[tuple[str, ...], int]] = {}
    for start in range(0, len(nmis), _IN_CHUNK):
        rows = await connection.execute(
            select(vx.c.id, vx.c.nmi, vx.c.part, vx.c.level, vx.c.code, vx.c.field, vx.c.nsp_connection_id,
                   vx.c.nsp_device_id)
            .where(and_(vx.c.nmi.in_(nmis[start : start + _IN_CHUNK]), vx.c.status == ExceptionStatus.OPEN))
        )
        for r in rows:
            key = (r.level, r.code, r.field or "", r.nsp_connection_id or "", r.nsp_device_id or "")
            found.setdefault((r.nmi, r.part), {})[key] = r.id
    return found


def _values(finding: ValidationException) -> dict[str, Any]:
    return {
        "level": finding.level,
        "code": finding.code,
        "detail": finding.detail,
        "title": finding.title,
        "field": finding.field,
        "transaction_id": finding.transaction_id,
        "nsp_connection_id": finding.nsp_connection_id,
        "connection_id": finding.connection_id,
        "nsp_device_id": finding.nsp_device_id,
        "device_id": finding.device_id,
        "raw": None if finding.raw is None else json.dumps(finding.raw, default=str),
    }


async def list_exceptions(
    connection: AsyncConnection,
    *,
    open_only: bool = False,
    nmi: str | None = None,
    level: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Exceptions as the CLI and admin surface show them (AEMO's field names)."""
    query = select(vx).order_by(vx.c.nmi, vx.c.id)
    if open_only:
        query = query.where(vx.c.status == ExceptionStatus.OPEN)
    if nmi:
        query = query.where(vx.c.nmi == nmi)
    if level:
        query = query.where(vx.c.level == level)
    if limit:
        query = query.limit(limit)
    return [_item(dict(row._mapping)) for row in await connection.execute(query)]


def _item(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "nmi": row["nmi"],
        "part": row["part"],
        "level": row["level"],
        "code": row["code"],
        "title": row["title"],
        "detail": row["detail"],
        "field": row["field"],
        "transactionId": row["transaction_id"],
        "nspConnectionId": row["nsp_connection_id"],
        "connectionId": row["connection_id"],
        "nspDeviceId": row["nsp_device_id"],
        "deviceId": row["device_id"],
        "status": row["status"],
        "firstSeen": _utc(row["first_seen_at"]),
        "lastSeen": _utc(row["last_seen_at"]),
        "resolvedAt": _utc(row["resolved_at"]),
    }


def _utc(value: datetime | None) -> datetime | None:
    """The moment with its zone: times are stored in UTC, but SQLite hands them back naive.
    (Shown in the operator's zone by the CLI: dersync.cli.output.local_time.)"""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def open_counts(connection: AsyncConnection) -> dict[str, int]:
    rows = await connection.execute(
        select(vx.c.level, func.count()).where(vx.c.status == ExceptionStatus.OPEN).group_by(vx.c.level)
    )
    counts = {level.value: 0 for level in Level}
    counts.update({level: count for level, count in rows})
    return counts
