"""Which replica pushes and reconciles: exactly one at a time.

On PostgreSQL the leader holds a session-level advisory lock on a dedicated connection. The
database releases it the moment that connection ends, including when the process is killed
with SIGKILL, so a standby that retries every few seconds takes over well within
`failover_seconds`; no home-made lease protocol, no clock assumptions. SQLite is a single-box
store: the one process is always the leader.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any, Callable

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dersync.settings import Settings
from dersync.store import Store

log = structlog.get_logger("dersync.leader")

#: Any constant works as long as every replica uses the same one ("DERSYNC" in ASCII).
ADVISORY_LOCK_KEY = 0x4445525359_4E43 % (2**63)


class Leadership:
    """Base: a single process is always the leader."""

    def __init__(self) -> None:
        self.replica_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.leading = True
        #: Called when a standby becomes the leader (not at start: the first pass runs anyway).
        self.on_acquired: Callable[[], Any] | None = None
        #: Called when the leader's lock is gone: a pass under way must stop taking records,
        #: because a standby may already lead and two replicas must not push at once.
        self.on_lost: Callable[[], Any] | None = None

    async def start(self) -> None:
        log.info("leader.acquired", replica=self.replica_id, mechanism="single process")

    async def is_leader(self) -> bool:
        return self.leading

    async def stop(self) -> None:
        self.leading = False


class AdvisoryLockLeadership(Leadership):
    def __init__(self, store: Store, retry_seconds: float) -> None:
        super().__init__()
        self.store = store
        self.retry_seconds = retry_seconds
        self.leading = False
        self._connection: AsyncConnection | None = None
        self._task: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        await self._try_acquire()
        if not self.leading:
            log.info("leader.standby", replica=self.replica_id)
        self._task = asyncio.create_task(self._watch(), name="dersync-leadership")

    async def is_leader(self) -> bool:
        return self.leading

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.retry_seconds)
            if self.leading:
                await self._check_held()
            else:
                await self._try_acquire()

    async def _try_acquire(self) -> None:
        try:
            if self._connection is None:
                self._connection = await self.store.engine.connect()
            got = (await self._connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                                  {"key": ADVISORY_LOCK_KEY})).scalar_one()
            await self._connection.commit()
        except Exception as exc:  # noqa: BLE001 - the store may be briefly away; try again later
            log.warning("leader.check_failed", replica=self.replica_id, error=str(exc))
            await self._drop_connection()
            return
        if got:
            self.leading = True
            log.info("leader.acquired", replica=self.replica_id, mechanism="postgresql advisory lock")
            if self.on_acquired is not None:
                try:
                    self.on_acquired()
                except Exception as exc:  # noqa: BLE001 - the next scheduled pass comes anyway
                    log.warning("leader.on_acquired_failed", replica=self.replica_id, error=str(exc))

    async def _check_held(self) -> None:
        """The lock lives as long as the connection: if the connection is gone, so is leadership."""
        try:
            assert self._connection is not None
            await self._connection.execute(text("SELECT 1"))
            await self._connection.commit()
        except Exception as exc:  # noqa: BLE001
            self.leading = False
            log.warning("leader.lost", replica=self.replica_id, error=str(exc))
            await self._drop_connection()
            if self.on_lost is not None:
                self.on_lost()

    async def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                await self._connection.close()
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass
            self._connection = None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.leading and self._connection is not None:
            try:
                await self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                await self._connection.commit()
                log.info("leader.released", replica=self.replica_id)
            except Exception:  # noqa: BLE001 - closing the connection releases it anyway
                pass
        self.leading = False
        await self._drop_connection()


def leadership_for(settings: Settings, store: Store) -> Leadership:
    if settings.is_sqlite:
        return Leadership()
    # Retry several times within the failover window so a dead leader is replaced in time.
    return AdvisoryLockLeadership(store, retry_seconds=max(0.5, settings.failover_seconds / 6))
