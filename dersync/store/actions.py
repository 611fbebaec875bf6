"""What people do to records (re-drive, park, unpark) and the log of it.

Every action is one row in `console_action` (who, when, what, why, and the selection as JSON),
with one `console_action_nmi` row per NMI it touched, so that an NMI's page lists every action
that concerned it, a bulk re-drive of 50,000 NMIs included. The change and its log row are
written in one transaction: there is no action without its record, nor a record of one that
did not happen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import desc, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dersync.errors import DersyncError
from dersync.store import records
from dersync.store.inbox import ExceptionFilter, selected_nmis
from dersync.store.tables import console_action, console_action_nmi, der_record
from dersync.store.users import utc
from dersync.vocabulary import ActionKind
from dersync.wording import plural

#: NMIs per statement (well inside SQLite's and asyncpg's limits on bound parameters).
_CHUNK = 1000


class NotInStore(DersyncError):
    """An action named NMIs the store does not hold."""

    def __init__(self, nmis: Sequence[str]) -> None:
        self.nmis = list(nmis)
        shown = ", ".join(self.nmis[:5]) + (f" and {len(self.nmis) - 5} more" if len(self.nmis) > 5 else "")
        super().__init__(f"not in the store: {shown}")


class NothingSelected(DersyncError):
    """A re-drive whose selection holds no NMI."""


class SelectionChanged(DersyncError):
    """The NMIs a confirmed bulk re-drive names are no longer the ones its preview showed."""

    def __init__(self, count: int) -> None:
        self.count = count
        super().__init__(f"the selection changed since its preview (it now holds {plural(count, 'NMI')}): "
                         "preview it again before confirming")


@dataclass(frozen=True)
class Selection:
    """Which NMIs a re-drive acts on: named ones, or those with an exception matching a filter."""

    nmis: tuple[str, ...] = ()
    filter: ExceptionFilter | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.filter is not None:
            return {"filter": self.filter.as_dict()}
        return {"nmis": list(self.nmis[:100]), **({"more": len(self.nmis) - 100} if len(self.nmis) > 100 else {})}


@dataclass(frozen=True)
class Resolved:
    """A selection turned into NMIs (in NMI order), with the parked ones among them."""

    nmis: list[str]
    parked: set[str]

    @property
    def fingerprint(self) -> str:
        """Names exactly this set of NMIs: a confirmation carries its preview's, and acts only if
        the selection still holds the same NMIs."""
        return hashlib.sha256("\n".join(self.nmis).encode()).hexdigest()


async def resolve(connection: AsyncConnection, selection: Selection, now: datetime) -> Resolved:
    """The selection's NMIs; raises `NotInStore` for named NMIs the store lacks."""
    if selection.filter is not None:
        nmis = await selected_nmis(connection, selection.filter, now)
    else:
        wanted = sorted(set(selection.nmis))
        held: set[str] = set()
        for start in range(0, len(wanted), _CHUNK):
            rows = await connection.execute(select(der_record.c.nmi).where(
                der_record.c.nmi.in_(wanted[start : start + _CHUNK])))
            held.update(nmi for (nmi,) in rows)
        missing = [nmi for nmi in wanted if nmi not in held]
        if missing:
            raise NotInStore(missing)
        nmis = wanted
    parked = {nmi for (nmi,) in await connection.execute(
        select(der_record.c.nmi).where(der_record.c.parked_at.is_not(None)))}
    return Resolved(nmis, parked & set(nmis))


async def states_of(connection: AsyncConnection, nmis: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Sync state, due and parked flags of a few NMIs (a preview's page)."""
    rows = await connection.execute(
        select(der_record.c.nmi, der_record.c.sync_state, der_record.c.due, der_record.c.parked_at)
        .where(der_record.c.nmi.in_(list(nmis))))
    return {r.nmi: {"syncState": r.sync_state, "due": bool(r.due), "parked": r.parked_at is not None}
            for r in rows}


async def redrive(connection: AsyncConnection, selection: Selection, *, actor: str, reason: str | None,
                  now: datetime, expect: str | None = None) -> tuple[int, Resolved]:
    """Make the selection's records due with their synced content forgotten, and log it; returns
    the action's id and what was re-driven. With `expect` (a preview's fingerprint) it acts only
    on exactly the previewed NMIs (`SelectionChanged` otherwise)."""
    resolved = await resolve(connection, selection, now)
    if not resolved.nmis:
        raise NothingSelected("nothing to re-drive: the selection holds no NMI the store has")
    if expect is not None and expect != resolved.fingerprint:
        raise SelectionChanged(len(resolved.nmis))
    for start in range(0, len(resolved.nmis), _CHUNK):
        await records.redrive(connection, resolved.nmis[start : start + _CHUNK])
    detail = {**selection.as_dict(), "nmis_selected": len(resolved.nmis), "parked": len(resolved.parked),
              "fingerprint": resolved.fingerprint}
    action_id = await log_action(connection, ActionKind.REDRIVE, actor=actor, reason=reason, detail=detail,
                                 nmis=resolved.nmis, now=now)
    return action_id, resolved


async def redrive_again(connection: AsyncConnection, since: datetime) -> int:
    """Re-drive once more the records re-driven since `since` that a pass answered but left due.

    A pass that had a record in flight when it was re-driven records its answer afterwards: the
    store keeps the record due (the revision moved on) but also notes the content as sent, so
    the next pass would find it unchanged and send nothing. Such records are exactly the
    re-driven ones left due with an answer recorded (synced or rejected); forgetting what was
    sent again makes the next pass send them. Records the pass sent after their re-drive are no
    longer due, and are not sent twice; parked ones and ones left to retry are left as they are
    (so an AEMO that is away never makes passes follow each other without end).
    """
    rows = await connection.execute(
        select(console_action_nmi.c.nmi).distinct()
        .join(console_action, console_action.c.id == console_action_nmi.c.action_id)
        .where(console_action.c.kind == ActionKind.REDRIVE, console_action.c.at >= since))
    nmis = [nmi for (nmi,) in rows]
    again = 0
    for start in range(0, len(nmis), _CHUNK):
        again += await records.redrive(connection, nmis[start : start + _CHUNK], only_left_due=True)
    return again


async def park(connection: AsyncConnection, nmi: str, *, actor: str, reason: str, now: datetime) -> bool:
    """Park the record (a parked one gets the new reason); True when it was not parked before.
    Raises `NotInStore` when the store does not hold it."""
    before = (await connection.execute(select(der_record.c.parked_at).where(der_record.c.nmi == nmi))).first()
    if before is None:
        raise NotInStore([nmi])
    values: dict[str, Any] = {"parked_by": actor, "parked_reason": reason}
    if before.parked_at is None:
        values["parked_at"] = now
    await connection.execute(update(der_record).where(der_record.c.nmi == nmi).values(**values))
    await log_action(connection, ActionKind.PARK, actor=actor, reason=reason,
                     detail={"nmi": nmi, "already_parked": before.parked_at is not None}, nmis=[nmi], now=now)
    return before.parked_at is None


async def unpark(connection: AsyncConnection, nmi: str, *, actor: str, reason: str | None, now: datetime) -> bool:
    """Hand the record back to the sync passes; True when it was parked (only then is it logged).
    Raises `NotInStore` when the store does not hold it."""
    before = (await connection.execute(select(der_record.c.parked_at, der_record.c.parked_reason)
                                       .where(der_record.c.nmi == nmi))).first()
    if before is None:
        raise NotInStore([nmi])
    if before.parked_at is None:
        return False
    await connection.execute(update(der_record).where(der_record.c.nmi == nmi)
                             .values(parked_at=None, parked_by=None, parked_reason=None))
    await log_action(connection, ActionKind.UNPARK, actor=actor, reason=reason,
                     detail={"nmi": nmi, "parked_since": utc(before.parked_at).isoformat(),
                             "parked_reason": before.parked_reason}, nmis=[nmi], now=now)
    return True


async def log_action(connection: AsyncConnection, kind: ActionKind, *, actor: str, reason: str | None,
                     detail: Mapping[str, Any], nmis: Sequence[str] = (), now: datetime) -> int:
    result = await connection.execute(
        console_action.insert().values(at=now, actor=actor, kind=kind, reason=reason,
                                       detail=json.dumps(dict(detail), default=str), nmi_count=len(nmis))
        .returning(console_action.c.id))
    action_id = int(result.scalar_one())
    for start in range(0, len(nmis), _CHUNK * 5):
        await connection.execute(console_action_nmi.insert(),
                                 [{"action_id": action_id, "nmi": nmi} for nmi in nmis[start : start + _CHUNK * 5]])
    return action_id


async def actions_of(connection: AsyncConnection, nmi: str, limit: int = 200) -> list[dict[str, Any]]:
    """The actions that concerned the NMI, newest first."""
    rows = await connection.execute(
        select(console_action).join(console_action_nmi, console_action_nmi.c.action_id == console_action.c.id)
        .where(console_action_nmi.c.nmi == nmi).order_by(desc(console_action.c.id)).limit(limit))
    return [_action(dict(row._mapping)) for row in rows]


async def recent_actions(connection: AsyncConnection, limit: int = 100) -> list[dict[str, Any]]:
    rows = await connection.execute(select(console_action).order_by(desc(console_action.c.id)).limit(limit))
    return [_action(dict(row._mapping)) for row in rows]


def _action(m: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": m["id"], "at": utc(m["at"]), "actor": m["actor"], "kind": m["kind"], "reason": m["reason"],
            "nmiCount": m["nmi_count"], "detail": json.loads(m["detail"] or "{}")}
