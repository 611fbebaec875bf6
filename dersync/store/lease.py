"""The sender lease as the store keeps it: one row that says which process may talk to AEMO.

Every statement here is a single compare-and-swap, so two processes can never both believe a
change of holder went their way:

* `claim` takes the row only if it still shows the `(generation, renewal)` the claimer saw
  (or inserts it when there is none), and bumps `generation`;
* `renew` bumps `renewal` only for the holder of the current generation;
* `release` clears the holder, only for the holder of the current generation.

When the lease lapses is decided by the processes' own clocks (see `dersync.leadership`), never
by comparing wall-clock times: the row only carries counters, and `renewed_at` is informational.

`check_fence` is the store's side of fencing: a write that carries a generation other than the
current one (a deposed leader's) is refused inside the same transaction, so it cannot land after
another process took over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from dersync.errors import LeaseLost
from dersync.store.tables import sender_lease

#: The one lease dersync uses: the right to send to AEMO's NMI and Installation APIs.
SENDER = "sender"


@dataclass(frozen=True)
class LeaseRow:
    """The lease as last written: who holds it (None once released), its two counters, and the
    holder's own rule for when it has lapsed (processes may run with different settings)."""

    holder: str | None
    generation: int
    renewal: int
    lapse_seconds: float
    renewed_at: datetime | None

    @property
    def version(self) -> tuple[int, int]:
        """What a claimer must still find for its claim to win."""
        return (self.generation, self.renewal)


@dataclass(frozen=True)
class Fence:
    """The generation a holder writes under; the store refuses it once another process claimed."""

    holder: str
    generation: int


@dataclass(frozen=True)
class Claim:
    """Who claims, what they saw (None: no row yet), and their rule for when their lease lapses."""

    holder: str
    seen: tuple[int, int] | None
    lapse_seconds: float


async def read(connection: AsyncConnection, name: str = SENDER) -> LeaseRow | None:
    row = (await connection.execute(
        select(sender_lease.c.holder, sender_lease.c.generation, sender_lease.c.renewal,
               sender_lease.c.lapse_seconds, sender_lease.c.renewed_at).where(sender_lease.c.name == name)
    )).first()
    if row is None:
        return None
    return LeaseRow(row.holder, int(row.generation), int(row.renewal), float(row.lapse_seconds), row.renewed_at)


async def holder(connection: AsyncConnection, name: str = SENDER) -> dict[str, Any] | None:
    """Who holds the lease, for people (`dersync status`): holder (None once released),
    generation and when it was last written (database time)."""
    row = await read(connection, name)
    if row is None:
        return None
    return {"holder": row.holder, "generation": row.generation, "renewed_at": row.renewed_at}


async def claim(connection: AsyncConnection, claim: Claim, now: datetime, name: str = SENDER) -> int | None:
    """Take the lease if it is still as seen (`None`: there was no row); the new generation, or None."""
    if claim.seen is None:
        inserted = await connection.execute(
            _insert_if_absent(connection).values(name=name, holder=claim.holder, generation=1, renewal=0,
                                                 lapse_seconds=claim.lapse_seconds, renewed_at=now)
        )
        return 1 if inserted.rowcount == 1 else None
    generation, renewal = claim.seen
    changed = await connection.execute(
        update(sender_lease)
        .where(sender_lease.c.name == name, sender_lease.c.generation == generation,
               sender_lease.c.renewal == renewal)
        .values(holder=claim.holder, generation=generation + 1, renewal=0, lapse_seconds=claim.lapse_seconds,
                renewed_at=now)
    )
    return generation + 1 if changed.rowcount == 1 else None


async def renew(connection: AsyncConnection, fence: Fence, now: datetime, name: str = SENDER) -> bool:
    """Prove the holder is alive; False when another process has claimed the lease since."""
    changed = await connection.execute(
        update(sender_lease)
        .where(sender_lease.c.name == name, sender_lease.c.holder == fence.holder,
               sender_lease.c.generation == fence.generation)
        .values(renewal=sender_lease.c.renewal + 1, renewed_at=now)
    )
    return changed.rowcount == 1


async def release(connection: AsyncConnection, fence: Fence, name: str = SENDER) -> bool:
    """Hand the lease back at a clean stop, so a standby can claim it at once."""
    changed = await connection.execute(
        update(sender_lease)
        .where(sender_lease.c.name == name, sender_lease.c.holder == fence.holder,
               sender_lease.c.generation == fence.generation)
        .values(holder=None, renewal=sender_lease.c.renewal + 1)
    )
    return changed.rowcount == 1


async def check_fence(connection: AsyncConnection, fence: Fence, name: str = SENDER) -> None:
    """Raise `LeaseLost` unless `fence` is still the current holder and generation.

    Called first in a writing transaction. On PostgreSQL the row is locked for share until the
    transaction ends, so a claim waits for the write to commit and the write can never land
    after the claim; SQLite's writers are already serialised by `BEGIN IMMEDIATE`.
    """
    query = select(sender_lease.c.holder, sender_lease.c.generation).where(sender_lease.c.name == name)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    row = (await connection.execute(query)).first()
    if row is None or row.holder != fence.holder or int(row.generation) != fence.generation:
        current = "released" if row is None or row.holder is None else f"generation {row.generation}"
        raise LeaseLost(f"this process's sender lease (generation {fence.generation}) was taken over "
                        f"({current}); the write was refused")


def _insert_if_absent(connection: AsyncConnection) -> Insert:
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(sender_lease).on_conflict_do_nothing(index_elements=[sender_lease.c.name])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(sender_lease).on_conflict_do_nothing(index_elements=[sender_lease.c.name])
