"""Reconciliation's side of the store: every record with content (not only due ones), what the
store knows of some NMIs, and the drift findings of each reconcile pass.

Reads stream in NMI order with keyset batches (one short read per batch, flat memory), like
`records.due_batches`; findings are written per batch, tied to the reconcile pass (`sync_pass`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, desc, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dersync.store.records import COLUMNS, StoredRecord, nmi_batches
from dersync.store.tables import der_record, drift_finding, equipment_id, sync_pass
from dersync.vocabulary import DriftKind, PassKind, PassStatus, values

#: A reconcile pass whose findings are complete: a running one may have written only some batches.
_FINISHED_RECONCILE = and_(sync_pass.c.kind == PassKind.RECONCILE, sync_pass.c.status != PassStatus.RUNNING)


def record_batches(engine: AsyncEngine, batch_size: int) -> AsyncIterator[list[StoredRecord]]:
    """Every record holding NMI details or an installation, in NMI order, `batch_size` at a time."""
    has_content = or_(der_record.c.nmi_details.is_not(None), der_record.c.installation.is_not(None))
    return nmi_batches(engine, COLUMNS, has_content, batch_size, StoredRecord)


async def deleted_from_store(connection: AsyncConnection) -> list[str]:
    known = select(equipment_id.c.nmi).distinct().where(
        ~select(der_record.c.nmi).where(der_record.c.nmi == equipment_id.c.nmi).exists())
    return sorted(nmi for (nmi,) in await connection.execute(known))


async def with_installation(connection: AsyncConnection, nmis: Sequence[str]) -> set[str]:
    """Which of these NMIs the store holds an installation for (valid or not)."""
    if not nmis:
        return set()
    result = await connection.execute(
        select(der_record.c.nmi).where(and_(der_record.c.nmi.in_(nmis), der_record.c.installation.is_not(None)))
    )
    return {nmi for (nmi,) in result}


async def note_not_at_aemo(connection: AsyncConnection, nmis: Sequence[str], part: str) -> None:
    """Reconciliation saw AEMO without this part: the next pass creates it instead of updating.

    For an installation AEMO no longer holds, the AEMO ids remembered for its equipment are
    dropped too (they name nothing any more; the create's answer brings the new ones).
    """
    if not nmis:
        return
    column = "nmi_at_aemo" if part == "nmi" else "inst_at_aemo"
    await connection.execute(update(der_record).where(der_record.c.nmi.in_(nmis)).values({column: False}))
    if part == "installation":
        await connection.execute(delete(equipment_id).where(equipment_id.c.nmi.in_(nmis)))


async def save_findings(connection: AsyncConnection, pass_id: int, findings: Iterable[Mapping[str, Any]],
                        now: datetime) -> int:
    """Store findings (mappings with nmi, kind, part, detail, fields) under the reconcile pass."""
    rows = [
        {"reconcile_pass_id": pass_id, "nmi": f["nmi"], "kind": f["kind"], "part": f["part"],
         "detail": f["detail"], "fields": json.dumps(list(f["fields"]), default=str), "found_at": now}
        for f in findings
    ]
    if rows:
        await connection.execute(drift_finding.insert(), rows)
    return len(rows)


async def latest_findings(connection: AsyncConnection, *, nmi: str | None = None,
                          kind: str | None = None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The most recent finished reconcile pass and its findings (optionally one NMI or kind)."""
    row = (await connection.execute(
        select(sync_pass.c.id, sync_pass.c.started_at, sync_pass.c.finished_at, sync_pass.c.status,
               sync_pass.c.summary)
        .where(_FINISHED_RECONCILE)
        .order_by(desc(sync_pass.c.id)).limit(1)
    )).first()
    if row is None:
        return None, []
    found = dict(row._mapping)
    found["summary"] = json.loads(found["summary"]) if found["summary"] else {}
    query = select(drift_finding).where(drift_finding.c.reconcile_pass_id == found["id"])
    if nmi is not None:
        query = query.where(drift_finding.c.nmi == nmi)
    if kind is not None:
        query = query.where(drift_finding.c.kind == kind)
    result = await connection.execute(query.order_by(drift_finding.c.nmi, drift_finding.c.id))
    findings = []
    for item in result:
        data = dict(item._mapping)
        data["fields"] = json.loads(data["fields"]) if data["fields"] else []
        findings.append(data)
    return found, findings


async def latest_counts(connection: AsyncConnection) -> dict[str, int]:
    """Findings of the latest finished reconcile pass by kind (the ones `latest_findings` lists),
    every kind present: a kind that vanished must read 0 on a dashboard, not keep its old value."""
    latest = select(func.max(sync_pass.c.id)).where(_FINISHED_RECONCILE).scalar_subquery()
    rows = await connection.execute(
        select(drift_finding.c.kind, func.count()).where(drift_finding.c.reconcile_pass_id == latest)
        .group_by(drift_finding.c.kind)
    )
    counts = dict.fromkeys(values(DriftKind), 0)
    counts.update({kind: count for kind, count in rows})
    return counts
