"""The log of passes (sync and reconciliation): when they ran and what they counted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import desc, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dersync.store.tables import sync_pass


@dataclass
class OpenPass:
    """A pass in progress; its body sets `status` once it knows how it ended ("failed" until then)."""

    id: int
    status: str = "failed"
    error: str | None = None


#: Why a pass of the same kind found still "running" is closed when a new one starts.
ABANDONED = "did not finish: its process stopped, or the store failed before the pass could be closed"


async def start_pass(connection: AsyncConnection, kind: str, now: datetime) -> int:
    """Open a pass, closing any earlier one of its kind left "running".

    Such a row almost always belongs to a process that died or lost its store mid-pass, and
    would otherwise show as running forever in `dersync status`; if that pass is in fact still
    going (a hand-run `sync` on a store the daemon does not use), its own finish overwrites this.
    """
    await connection.execute(
        update(sync_pass).where(sync_pass.c.kind == kind, sync_pass.c.status == "running")
        .values(status="interrupted", finished_at=now, error=ABANDONED)
    )
    result = await connection.execute(
        sync_pass.insert().values(kind=kind, started_at=now, status="running").returning(sync_pass.c.id)
    )
    return int(result.scalar_one())


async def finish_pass(connection: AsyncConnection, pass_id: int, status: str, summary: dict[str, Any],
                      now: datetime, error: str | None = None) -> None:
    await connection.execute(
        update(sync_pass).where(sync_pass.c.id == pass_id)
        .values(status=status, finished_at=now, summary=json.dumps(summary), error=error)
    )


async def last_pass(connection: AsyncConnection, kind: str, *, successful: bool = False) -> dict[str, Any] | None:
    query = select(sync_pass).where(sync_pass.c.kind == kind).order_by(desc(sync_pass.c.id)).limit(1)
    if successful:
        query = query.where(sync_pass.c.status == "ok")
    row = (await connection.execute(query)).first()
    if row is None:
        return None
    data = dict(row._mapping)
    data["summary"] = json.loads(data["summary"]) if data["summary"] else {}
    return data
