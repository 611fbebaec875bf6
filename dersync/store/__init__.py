"""The local store: the operator's DER records, their sync state and what AEMO said about them.

`Store` is the one door to the database: every method is one short transaction, and database
failures surface as `StoreUnavailable` with a readable reason (never a driver traceback).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dersync.errors import StoreUnavailable
from dersync.store import (
    actions,
    compliance,
    drift,
    equipment,
    inbox,
    lease,
    ledger,
    passes,
    records,
    users,
    validation_exceptions,
)
from dersync.store.actions import NothingSelected, NotInStore, Resolved, Selection, SelectionChanged
from dersync.store.compliance import Accepted, FirstAcceptance, InstallationFacts
from dersync.store.db import SQLITE_BUSY_SECONDS, describe_url, make_engine, migrate, ping, require_store, writer
from dersync.store.equipment import EquipmentId, IdMap
from dersync.store.inbox import ExceptionFilter
from dersync.store.lease import Claim, Fence, LeaseRow
from dersync.store.outcomes import PartOutcome, RecordOutcome, record_outcomes
from dersync.store.records import ABSENT, InputRow, StoredRecord
from dersync.store.users import Credentials, Session
from dersync.store.validation_exceptions import ValidationException
from dersync.vocabulary import ActionKind, ExceptionStatus, PassKind

__all__ = [
    "ABSENT", "Accepted", "Claim", "Credentials", "EquipmentId", "ExceptionFilter", "Fence", "FirstAcceptance",
    "IdMap", "InputRow", "InstallationFacts", "LeaseRow", "NotInStore", "NothingSelected", "PartOutcome",
    "RecordOutcome", "Resolved", "Selection", "SelectionChanged", "Session", "Store", "StoredRecord",
    "ValidationException", "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._writer = writer(engine)
        # SQLite has one writer at a time: queue this process's writers on the event loop
        # rather than parking a driver thread per task in SQLite's busy handler.
        self._write_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @classmethod
    async def open(cls, database_url: str, *, migrate_schema: bool = True, create: bool = True,
                   busy_timeout_seconds: float = SQLITE_BUSY_SECONDS) -> Store:
        """Connect and migrate; raises StoreUnavailable with the reason if the store is out of reach.

        `create=False` is for commands that only read: where no dersync store exists yet they
        raise StoreNotFound and create nothing (no folder, file or table), rather than report
        an empty store that a mistyped URL made. `busy_timeout_seconds` (SQLite only): how long
        a write waits for another connection's lock.
        """
        engine = make_engine(database_url, busy_timeout_seconds=busy_timeout_seconds, create=create)
        try:
            if not create:
                await require_store(engine)
            if migrate_schema:
                await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    @property
    def description(self) -> str:
        return describe_url(str(self.engine.url))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        with self._unavailable_as_error():
            async with AsyncExitStack() as stack:
                if self._write_turn is not None:
                    await stack.enter_async_context(self._write_turn)
                connection = await stack.enter_async_context(self._writer.begin())
                yield connection

    @contextmanager
    def _unavailable_as_error(self) -> Iterator[None]:
        """Database failures become StoreUnavailable with a readable reason, not a driver traceback."""
        try:
            yield
        except (OperationalError, DBAPIError) as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise StoreUnavailable(f"store {self.description} failed: {reason}") from None
        except OSError as exc:
            # asyncpg raises plain OSErrors (connection refused, reset) when it cannot connect.
            raise StoreUnavailable(f"store {self.description} is unreachable: {exc.strerror or exc}") from None

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction: on SQLite it takes no write lock (WAL readers run beside the
        pass's writes), so the console stays quick while a pass records its outcomes."""
        with self._unavailable_as_error():
            async with self.engine.connect() as connection:
                yield connection

    async def _stream(self, batches: AsyncIterator[list[Any]]) -> AsyncIterator[list[Any]]:
        with self._unavailable_as_error():
            async for batch in batches:
                yield batch

    async def ping(self) -> None:
        async with self.transaction() as connection:
            await ping(connection)

    # --- input ---------------------------------------------------------------------------------
    async def upsert_inputs(self, rows: Sequence[InputRow]) -> None:
        async with self.transaction() as connection:
            await records.upsert_inputs(connection, rows)

    def due_batches(self, batch_size: int) -> AsyncIterator[list[StoredRecord]]:
        return self._stream(records.due_batches(self.engine, batch_size))

    async def load_records(self, nmis: Sequence[str]) -> list[StoredRecord]:
        async with self.transaction() as connection:
            return await records.load_records(connection, nmis)

    async def count_due(self) -> int:
        async with self.transaction() as connection:
            return await records.count_due(connection)

    async def mark_due(self, nmis: Sequence[str], *, forget_synced: bool = True) -> int:
        async with self.transaction() as connection:
            return await records.mark_due(connection, nmis, forget_synced=forget_synced)

    # --- sync outcomes -------------------------------------------------------------------------
    async def mark_attempts(self, nmis: Sequence[str], *, fence: Fence | None = None) -> None:
        """Note that writes are about to go out; refused (`LeaseLost`) under a stale `fence`."""
        async with self.transaction() as connection:
            if fence is not None:
                await lease.check_fence(connection, fence)
            await records.mark_attempts(connection, nmis, utcnow())

    async def record_outcomes(self, outcomes: Sequence[RecordOutcome], *, fence: Fence | None = None,
                              sent: Sequence[ledger.SentRequest] = ()) -> None:
        """Record outcomes, and the requests that led to them (`sent`, for the ledger), in one
        transaction: all of them or, if the store fails, none.

        Under a `fence` that is no longer current (another process took over the sender lease)
        nothing is written and `LeaseLost` is raised: the records stay due with their attempt
        noted, and the new holder reads AEMO before writing them again (the caller then stores
        `sent` on its own: what was sent is a fact, whoever leads now).
        """
        if not outcomes and not sent:
            return
        async with self.transaction() as connection:
            if fence is not None and outcomes:
                await lease.check_fence(connection, fence)
            await ledger.append(connection, sent)
            if outcomes:
                await record_outcomes(connection, outcomes, utcnow(), answered=ledger.answered_writes(sent))

    # --- the submission ledger -----------------------------------------------------------------
    async def append_ledger(self, requests: Sequence[ledger.SentRequest]) -> None:
        """Record requests on their own (the engine records its requests with their outcomes)."""
        if not requests:
            return
        async with self.transaction() as connection:
            await ledger.append(connection, requests)

    async def ledger_for_nmi(self, nmi: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The NMI's requests to AEMO, newest first (see `ledger.as_row` for the fields)."""
        async with self.transaction() as connection:
            return await ledger.for_nmi(connection, nmi, limit)

    async def ledger_body(self, entry_id: int) -> tuple[dict[str, Any], bytes | None] | None:
        async with self.transaction() as connection:
            return await ledger.body_of(connection, entry_id)

    def ledger_between(self, start: datetime, end: datetime, batch_size: int = 5000
                       ) -> AsyncIterator[list[dict[str, Any]]]:
        return self._stream(ledger.between(self.engine, start, end, batch_size))

    async def prune_ledger(self, *, rows_before: datetime, bodies_before: datetime,
                           batch_size: int = 1000) -> tuple[int, int]:
        async with self.transaction() as connection:
            return await ledger.prune(connection, rows_before=rows_before, bodies_before=bodies_before,
                                      batch_size=batch_size)

    # --- the sender lease (dersync.leadership) -------------------------------------------------
    async def read_lease(self) -> LeaseRow | None:
        async with self.transaction() as connection:
            return await lease.read(connection)

    async def claim_lease(self, claim: Claim) -> int | None:
        """The new generation if the lease was still as the claimer saw it, else None."""
        async with self.transaction() as connection:
            return await lease.claim(connection, claim, utcnow())

    async def renew_lease(self, fence: Fence) -> bool:
        async with self.transaction() as connection:
            return await lease.renew(connection, fence, utcnow())

    async def release_lease(self, fence: Fence) -> bool:
        async with self.transaction() as connection:
            return await lease.release(connection, fence)

    async def load_ids(self, nmis: Sequence[str]) -> dict[str, IdMap]:
        async with self.transaction() as connection:
            return await equipment.load_ids(connection, nmis)

    async def load_equipment(self, nmis: Sequence[str]) -> dict[str, list[EquipmentId]]:
        """What AEMO held for these NMIs at its latest answer (ids, stage, status), by NMI."""
        async with self.transaction() as connection:
            return await equipment.load_equipment(connection, nmis)

    # --- compliance deadlines (dersync.compliance) ----------------------------------------------
    async def first_acceptances(self, nmis: Sequence[str]) -> dict[str, dict[str, FirstAcceptance]]:
        """When AEMO first accepted each AC connection of these NMIs, by NMI and nspConnectionId."""
        async with self.transaction() as connection:
            return await compliance.first_acceptances(connection, nmis)

    async def record_held_at_aemo(self, held: Mapping[str, Mapping[str, Any]]) -> int:
        """First acceptances from AEMO's installations as read back (by NMI), for connections
        that have none yet (see `compliance.record_held`); how many were recorded."""
        async with self.transaction() as connection:
            return await compliance.record_held(connection, held, utcnow())

    def installation_facts(self, batch_size: int) -> AsyncIterator[list[InstallationFacts]]:
        """Every record holding an installation, in NMI order, with what compliance is judged from."""
        return self._stream(compliance.installation_batches(self.engine, batch_size))

    # --- admin views ---------------------------------------------------------------------------
    async def list_exceptions(self, **filters: Any) -> list[dict[str, Any]]:
        async with self.transaction() as connection:
            return await validation_exceptions.list_exceptions(connection, **filters)

    async def status(self) -> dict[str, Any]:
        """Counts by sync state, due (not parked) and parked records, open exceptions by level, the
        latest reconciliation's findings by kind, and the last passes."""
        async with self._reading() as connection:
            counts, tally_rows = await records.tally(connection)
            status = {
                "records": counts,
                "due": await records.count_due(connection),
                "parked": await records.count_parked(connection),
                "open_exceptions": await validation_exceptions.open_counts(connection),
                "drift": await drift.latest_counts(connection),
                "last_sync": await passes.last_pass(connection, PassKind.SYNC),
                "last_successful_sync": await passes.last_pass(connection, PassKind.SYNC, successful=True),
                "last_reconcile": await passes.last_pass(connection, PassKind.RECONCILE),
                "sender": await lease.holder(connection),
            }
        await self._compact_tally(tally_rows)
        return status

    async def _compact_tally(self, rows_read: int) -> None:
        """Fold the tally's deltas together once a reader found many (after a large import)."""
        if rows_read > records.TALLY_COMPACT_AT:
            async with self.transaction() as connection:
                await records.compact_tally(connection)

    @asynccontextmanager
    async def recorded_pass(self, kind: str,
                            finished: Callable[[passes.OpenPass], dict[str, Any]]) -> AsyncIterator[passes.OpenPass]:
        """Log a pass from start to end, however it ends: cancelled is "interrupted", an error is
        "failed" with its message, else the status the body set. `finished` gives the counts to
        store (and is the caller's place to log the end)."""
        opened = passes.OpenPass(await self.start_pass(kind))
        try:
            yield opened
        except asyncio.CancelledError:
            opened.status = "interrupted"
            raise
        except Exception as exc:
            opened.status, opened.error = "failed", str(exc)
            raise
        finally:
            await self.finish_pass(opened.id, opened.status, finished(opened), opened.error)

    async def start_pass(self, kind: str) -> int:
        async with self.transaction() as connection:
            return await passes.start_pass(connection, kind, utcnow())

    async def finish_pass(self, pass_id: int, status: str, summary: dict[str, Any],
                          error: str | None = None) -> None:
        async with self.transaction() as connection:
            await passes.finish_pass(connection, pass_id, status, summary, utcnow(), error)

    # --- reconciliation (dersync.reconcile) ----------------------------------------------------
    def record_batches(self, batch_size: int) -> AsyncIterator[list[StoredRecord]]:
        """Every record with NMI details or an installation (due or not), in NMI order."""
        return self._stream(drift.record_batches(self.engine, batch_size))

    async def nmis_deleted_from_store(self) -> list[str]:
        """NMIs AEMO held at dersync's last answer (their equipment ids are remembered) whose
        record is no longer in der_record."""
        async with self.transaction() as connection:
            return await drift.deleted_from_store(connection)

    async def with_installation(self, nmis: Sequence[str]) -> set[str]:
        async with self.transaction() as connection:
            return await drift.with_installation(connection, nmis)

    async def note_not_at_aemo(self, nmis: Sequence[str], part: str) -> None:
        async with self.transaction() as connection:
            await drift.note_not_at_aemo(connection, nmis, part)

    async def save_drift(self, pass_id: int, findings: Sequence[Any]) -> int:
        """Record a reconcile pass's findings (mappings: nmi, kind, part, detail, fields)."""
        async with self.transaction() as connection:
            return await drift.save_findings(connection, pass_id, findings, utcnow())

    async def latest_drift(self, *, nmi: str | None = None,
                           kind: str | None = None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The last finished reconcile pass and its findings."""
        async with self.transaction() as connection:
            return await drift.latest_findings(connection, nmi=nmi, kind=kind)

    async def drift_counts(self) -> dict[str, int]:
        """The latest finished reconciliation's findings by kind (every kind, 0 when none)."""
        async with self._reading() as connection:
            return await drift.latest_counts(connection)

    # --- the operator console: users and sessions ---------------------------------------------
    async def save_user(self, name: str, role: str, password_hash: str | None) -> bool:
        """Create a console user or change its role (and password, given a new hash; that ends
        its sessions); True when created."""
        async with self.transaction() as connection:
            return await users.save_user(connection, name, role, password_hash, utcnow())

    async def credentials(self, name: str) -> Credentials | None:
        async with self._reading() as connection:
            return await users.credentials(connection, name)

    async def list_users(self) -> list[dict[str, Any]]:
        async with self._reading() as connection:
            return await users.list_users(connection)

    async def remove_user(self, name: str) -> bool:
        async with self.transaction() as connection:
            return await users.remove_user(connection, name)

    async def create_session(self, session: Session) -> None:
        async with self.transaction() as connection:
            await users.create_session(connection, session)

    async def session(self, id_sha256: str) -> Session | None:
        async with self._reading() as connection:
            return await users.session(connection, id_sha256)

    async def touch_session(self, id_sha256: str) -> None:
        async with self.transaction() as connection:
            await users.touch_session(connection, id_sha256, utcnow())

    async def end_session(self, id_sha256: str) -> None:
        async with self.transaction() as connection:
            await users.end_session(connection, id_sha256)

    async def end_expired_sessions(self, idle_before: datetime) -> int:
        async with self.transaction() as connection:
            return await users.end_expired_sessions(connection, utcnow(), idle_before)

    # --- the operator console: actions ---------------------------------------------------------
    async def redrive(self, selection: Selection, *, actor: str, reason: str | None = None,
                      expect: str | None = None) -> tuple[int, Resolved]:
        """Make the selection's records due with their synced content forgotten (the next pass
        sends them as if changed), logged as one action; (action id, what was re-driven).
        Raises `NotInStore`, `NothingSelected`, or `SelectionChanged` (under `expect`)."""
        async with self.transaction() as connection:
            return await actions.redrive(connection, selection, actor=actor, reason=reason, now=utcnow(),
                                         expect=expect)

    async def redrive_again(self, since: datetime) -> int:
        """After a pass: re-drive again the records re-driven since `since` that it left due (see
        `actions.redrive_again`); how many."""
        async with self.transaction() as connection:
            return await actions.redrive_again(connection, since)

    async def redrive_preview(self, selection: Selection) -> Resolved:
        """What `redrive` would act on now; changes nothing."""
        async with self._reading() as connection:
            return await actions.resolve(connection, selection, utcnow())

    async def record_states(self, nmis: Sequence[str]) -> dict[str, dict[str, Any]]:
        async with self._reading() as connection:
            return await actions.states_of(connection, nmis)

    async def park(self, nmi: str, *, actor: str, reason: str) -> bool:
        """Park a record (sync passes skip it); True when it was not parked before."""
        async with self.transaction() as connection:
            return await actions.park(connection, nmi, actor=actor, reason=reason, now=utcnow())

    async def unpark(self, nmi: str, *, actor: str, reason: str | None = None) -> bool:
        """Hand a parked record back to the passes; True when it was parked."""
        async with self.transaction() as connection:
            return await actions.unpark(connection, nmi, actor=actor, reason=reason, now=utcnow())

    async def log_action(self, kind: ActionKind, *, actor: str, reason: str | None = None,
                         detail: dict[str, Any] | None = None) -> int:
        """Log an action that touches no record (a console user saved or removed)."""
        async with self.transaction() as connection:
            return await actions.log_action(connection, kind, actor=actor, reason=reason, detail=detail or {},
                                            now=utcnow())

    async def actions_of(self, nmi: str, limit: int = 200) -> list[dict[str, Any]]:
        async with self._reading() as connection:
            return await actions.actions_of(connection, nmi, limit)

    async def recent_actions(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self._reading() as connection:
            return await actions.recent_actions(connection, limit)

    # --- the operator console: what it reads ---------------------------------------------------
    async def exception_page(self, flt: ExceptionFilter, *, page: int = 1,
                             page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
        """One page of matching exceptions, newest first, and the number matching in all."""
        async with self._reading() as connection:
            return await inbox.exception_page(connection, flt, utcnow(), page=page, page_size=page_size)

    def exception_batches(self, flt: ExceptionFilter, batch_size: int = 2000) -> AsyncIterator[list[dict[str, Any]]]:
        """Every matching exception, newest first, a batch at a time (the CSV export)."""
        return self._stream(inbox.exception_batches(self.engine, flt, utcnow(), batch_size))

    async def exception_code_counts(self, flt: ExceptionFilter, limit: int = 200) -> list[dict[str, Any]]:
        async with self._reading() as connection:
            return await inbox.code_counts(connection, flt, utcnow(), limit)

    async def record_view(self, nmi: str) -> dict[str, Any] | None:
        """The record's content and sync state (None when the store does not hold it)."""
        async with self._reading() as connection:
            return await inbox.record_view(connection, nmi)

    async def nmi_view(self, nmi: str, *, ledger_limit: int = 50) -> dict[str, Any] | None:
        """Everything the store knows about one NMI (None when it holds no such record): its
        record and sync state, equipment ids, exceptions, actions, drift findings of the latest
        reconciliation and requests sent to AEMO."""
        async with self._reading() as connection:
            record = await inbox.record_view(connection, nmi)
            if record is None:
                return None
            reconciliation, findings = await drift.latest_findings(connection, nmi=nmi)
            return {
                "record": record,
                "equipment": await inbox.equipment_of(connection, nmi),
                "exceptions": await inbox.exceptions_of(connection, nmi),
                "actions": await actions.actions_of(connection, nmi),
                "reconciliation": reconciliation,
                "drift": findings,
                "ledger": await ledger.for_nmi(connection, nmi, ledger_limit),
            }

    async def console_overview(self, *, passes_shown: int = 8, codes_shown: int = 10) -> dict[str, Any]:
        """The overview page's numbers, in one read."""
        open_only = ExceptionFilter(status=ExceptionStatus.OPEN)
        async with self._reading() as connection:
            counts, tally_rows = await records.tally(connection)
            groups = await inbox.code_groups(connection, open_only, utcnow())
            overview = {
                "records": counts,
                "due": await records.count_due(connection),
                "parked": await records.count_parked(connection),
                "open_exceptions": inbox.by_level(groups),
                "top_codes": await inbox.with_titles(connection, groups[:codes_shown], open_only, utcnow()),
                "drift": await drift.latest_counts(connection),
                "running": await inbox.running_passes(connection),
                "sync_passes": await inbox.recent_passes(connection, PassKind.SYNC, passes_shown),
                "reconcile_passes": await inbox.recent_passes(connection, PassKind.RECONCILE, passes_shown),
            }
        await self._compact_tally(tally_rows)
        return overview

    async def parked_records(self, limit: int = 200) -> list[dict[str, Any]]:
        async with self._reading() as connection:
            return await inbox.parked_records(connection, limit)
