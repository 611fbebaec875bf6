"""Validation exceptions: what AEMO (or local validation) said is wrong, kept until it goes away.

An exception is identified by where it points (NMI, part, level, code, field, equipment), not
by its wording, so a rejection repeated on every push is one open row whose `last_seen_at`
moves; an exception that no longer appears after a push that could have reported it is resolved.
"""

from __future__ import annotations

import json
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dersync.store.tables import validation_exception as vx

LEVELS = ("local", "schema", "first", "second")


@dataclass(frozen=True)
class Finding:
    """One exception as the engine observed it."""

    level: str
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


async def sync_exceptions(
    connection: AsyncConnection,
    nmi: str,
    part: str,
    covered_levels: Iterable[str],
    findings: Iterable[Finding],
    now: datetime,
) -> None:
    """Make the open exceptions of (nmi, part) at `covered_levels` equal to `findings`."""
    levels = list(covered_levels)
    wanted: dict[tuple[str, ...], Finding] = {}
    for finding in findings:
        wanted.setdefault(finding.key(), finding)
    if not levels and not wanted:
        return
    rows = await connection.execute(
        select(vx.c.id, vx.c.level, vx.c.code, vx.c.field, vx.c.nsp_connection_id, vx.c.nsp_device_id)
        .where(and_(vx.c.nmi == nmi, vx.c.part == part, vx.c.status == "open",
                    vx.c.level.in_(set(levels) | {f.level for f in wanted.values()})))
    )
    existing = {(r.level, r.code, r.field or "", r.nsp_connection_id or "", r.nsp_device_id or ""): r.id for r in rows}
    for key, finding in wanted.items():
        values = _values(finding)
        if key in existing:
            await connection.execute(update(vx).where(vx.c.id == existing.pop(key)).values(last_seen_at=now, **values))
        else:
            await connection.execute(vx.insert().values(nmi=nmi, part=part, status="open", first_seen_at=now,
                                                        last_seen_at=now, **values))
    stale = [row_id for key, row_id in existing.items() if key[0] in levels]
    if stale:
        await connection.execute(update(vx).where(vx.c.id.in_(stale)).values(status="resolved", resolved_at=now))


def _values(finding: Finding) -> dict[str, Any]:
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
        query = query.where(vx.c.status == "open")
    if nmi:
        query = query.where(vx.c.nmi == nmi)
    if level:
        query = query.where(vx.c.level == level)
    if limit:
        query = query.limit(limit)
    return [_item(row._mapping) for row in await connection.execute(query)]


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
        "firstSeen": _iso(row["first_seen_at"]),
        "lastSeen": _iso(row["last_seen_at"]),
        "resolvedAt": _iso(row["resolved_at"]),
    }


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 with the zone: times are stored in UTC, but SQLite hands them back naive."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()


async def open_counts(connection: AsyncConnection) -> dict[str, int]:
    rows = await connection.execute(
        select(vx.c.level, func.count()).where(vx.c.status == "open").group_by(vx.c.level)
    )
    counts = {level: 0 for level in LEVELS}
    counts.update({level: count for level, count in rows})
    return counts
