"""The store's side of the console: parked records and the due queries, what a re-drive changes
(and what it keeps), the action log, users, and migration 0008 on an existing store."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, select

from dersync.mock import Simulator
from dersync.settings import Settings
from dersync.store import NothingSelected, NotInStore, PartOutcome, RecordOutcome, Selection, SelectionChanged, Store
from dersync.store.db import MIGRATIONS
from dersync.store.tables import der_record
from dersync.sync import sync_once
from dersync.testing import load, nmi_for, record
from dersync.vocabulary import Part, Result


async def due(store: Store) -> list[str]:
    return [r.nmi async for batch in store.due_batches(2) for r in batch]


async def test_parked_records_are_skipped_by_the_due_queries_and_counted(store: Store) -> None:
    """A parked record keeps its due flag but no pass takes it (batches, the due count and a
    retry round's re-read skip it); status counts it as parked; unparked, it is due again."""
    await load(store, [record(nmi_for(i)) for i in range(5)])
    assert await store.park(nmi_for(1), actor="olivia", reason="fix") is True
    assert await store.park(nmi_for(1), actor="olivia", reason="fix, day 2") is False
    assert await due(store) == [nmi_for(i) for i in (0, 2, 3, 4)]
    assert await store.count_due() == 4
    assert [r.nmi for r in await store.load_records([nmi_for(0), nmi_for(1)])] == [nmi_for(0)]
    status = await store.status()
    assert status["parked"] == 1 and status["due"] == 4 and status["records"]["pending"] == 5
    assert await store.unpark(nmi_for(1), actor="olivia") is True
    assert await store.unpark(nmi_for(1), actor="olivia") is False
    assert await store.count_due() == 5 and (await store.status())["parked"] == 0


async def test_a_redrive_forgets_what_was_sent_keeps_what_aemo_holds_and_outlives_a_pass_in_flight(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """Re-driven, a synced record is due and pending with its sent hashes forgotten and its
    revision moved on, while AEMO's ids and the at-AEMO flags stay (the pass updates, never
    creates twice); an outcome recorded under the revision a pass read before the re-drive
    leaves it due."""
    await load(store, [record(nmi_for(i)) for i in range(3)])
    await sync_once(settings, store)
    [before] = await store.load_records([nmi_for(1)])
    ids_before = await store.load_ids([nmi_for(1)])
    assert before.inst_synced_hash and not before.due and ids_before

    action_id, resolved = await store.redrive(Selection(nmis=(nmi_for(1),)), actor="olivia", reason="approved")
    assert resolved.nmis == [nmi_for(1)] and action_id > 0
    [after] = await store.load_records([nmi_for(1)])
    assert after.due and after.sync_state == "pending" and after.revision == before.revision + 1
    assert (after.nmi_synced_hash, after.inst_synced_hash, after.nmi_rejected_hash, after.inst_rejected_hash) == (
        None, None, None, None)
    assert after.inst_at_aemo is True and after.nmi_at_aemo is True
    assert await store.load_ids([nmi_for(1)]) == ids_before

    in_flight = RecordOutcome(nmi_for(1), before.revision, (PartOutcome(Part.INSTALLATION, Result.SYNCED, "h"),))
    await store.record_outcomes([in_flight])
    assert await due(store) == [nmi_for(1)]


async def test_a_bulk_redrive_is_one_action_listed_on_every_nmi_it_touched(store: Store) -> None:
    """Re-driving 2,500 NMIs writes one action, counted with its NMIs, that each NMI's own list
    shows; named NMIs the store lacks are refused and nothing is written; an empty selection and
    a stale fingerprint are refused too."""
    await load(store, [record(nmi_for(i)) for i in range(2500)])
    nmis = tuple(nmi_for(i) for i in range(2500))
    preview = await store.redrive_preview(Selection(nmis=nmis))
    action_id, resolved = await store.redrive(Selection(nmis=nmis), actor="cli:ops", reason="bulk",
                                              expect=preview.fingerprint)
    assert len(resolved.nmis) == 2500
    for nmi in (nmis[0], nmis[1234], nmis[-1]):
        [action] = await store.actions_of(nmi)
        assert (action["id"], action["kind"], action["nmiCount"], action["actor"]) == (action_id, "redrive", 2500,
                                                                                       "cli:ops")
    for selection, error in ((Selection(nmis=(nmi_for(0), "9999999999")), NotInStore),
                             (Selection(nmis=()), NothingSelected)):
        try:
            await store.redrive(selection, actor="x")
        except error:
            pass
        else:
            raise AssertionError(f"{selection} was accepted")
    try:
        await store.redrive(Selection(nmis=nmis[:2]), actor="x", expect=preview.fingerprint)
    except SelectionChanged as exc:
        assert exc.count == 2
    else:
        raise AssertionError("a stale fingerprint was accepted")
    assert len(await store.recent_actions()) == 1


async def test_users_keep_no_password_only_a_hash_and_a_new_password_ends_sessions(store: Store) -> None:
    """Saving a user with a new hash ends its sessions; listing users never returns the hash;
    removing a user ends its sessions too."""
    from datetime import UTC, datetime, timedelta

    from dersync.store import Session

    now = datetime.now(UTC)
    assert await store.save_user("olivia", "operator", "$argon2id$first") is True
    await store.create_session(Session("a" * 64, "olivia", "password", "t" * 43, now, now, now + timedelta(hours=1),
                                       None))
    assert (await store.session("a" * 64)) is not None
    assert await store.save_user("olivia", "viewer", None) is False  # a role change keeps sessions
    assert (await store.session("a" * 64)).role == "viewer"  # type: ignore[union-attr]
    assert await store.save_user("olivia", "viewer", "$argon2id$second") is False
    assert await store.session("a" * 64) is None
    assert all("hash" not in key for user in await store.list_users() for key in user)
    await store.create_session(Session("b" * 64, "olivia", "password", "t" * 43, now, now, now + timedelta(hours=1),
                                       None))
    assert await store.remove_user("olivia") is True and await store.session("b" * 64) is None
    assert await store.remove_user("olivia") is False


def _alembic(sync_connection: Any, verb: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = sync_connection
    getattr(command, verb)(config, revision)


async def test_migration_0008_upgrades_a_store_from_the_release_before(store: Store) -> None:
    """A store at 0005 holding records (as the previous release left it) gains the park columns,
    the console's tables and the inbox indexes when the service opens it; its records are kept
    and none is parked."""
    async with store.engine.begin() as connection:
        await connection.run_sync(lambda sync: _alembic(sync, "downgrade", "0005"))
        columns = await connection.run_sync(lambda sync: {c["name"] for c in inspect(sync).get_columns("der_record")})
        assert "parked_at" not in columns
        await connection.execute(der_record.insert().values(nmi=nmi_for(7), nmi_details="{}"))
    url = str(store.engine.url)
    await store.close()

    reopened = await Store.open(url)
    try:
        async with reopened.engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            indexes = await connection.run_sync(
                lambda sync: {i["name"] for i in inspect(sync).get_indexes("validation_exception")})
            parked = (await connection.execute(select(der_record.c.parked_at).where(
                der_record.c.nmi == nmi_for(7)))).scalar_one()
        assert {"console_user", "console_session", "console_action", "console_action_nmi"} <= tables
        assert {"ix_validation_exception_inbox", "ix_validation_exception_code"} <= indexes
        assert parked is None and await reopened.count_due() == 1
    finally:
        await reopened.close()


async def real_counts(store: Store) -> dict[str, int]:
    from sqlalchemy import func

    async with store.engine.connect() as connection:
        rows = await connection.execute(select(der_record.c.sync_state, func.count()).group_by(der_record.c.sync_state))
        return {state: count for state, count in rows}


async def test_the_tally_of_records_by_state_stays_exact_through_every_kind_of_write(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """The counts the overview, status and /metrics read from the triggers' tally equal a real
    count after imports, an ETL's own INSERTs, UPDATEs and DELETEs, upserts that change content,
    a sync pass, a re-drive and (PostgreSQL) folding the deltas together."""
    from sqlalchemy import delete, text, update

    from dersync.store import records

    async def check() -> None:
        real = await real_counts(store)
        tallied = (await store.status())["records"]
        assert {k: v for k, v in tallied.items() if v} == real

    await load(store, [record(nmi_for(i)) for i in range(30)])
    await check()
    async with store.engine.begin() as connection:  # an operator's ETL writing the table itself
        await connection.execute(der_record.insert(), [{"nmi": nmi_for(i), "nmi_details": "{}"} for i in range(30, 40)])
        await connection.execute(update(der_record).where(der_record.c.nmi == nmi_for(31))
                                 .values(nmi_details='{"a":1}'))
        await connection.execute(delete(der_record).where(der_record.c.nmi.in_([nmi_for(32), nmi_for(33)])))
    await check()
    await sync_once(settings, store)
    await check()
    await load(store, [record(nmi_for(i)) for i in range(5)])  # unchanged content: no state change
    await store.redrive(Selection(nmis=(nmi_for(1), nmi_for(2))), actor="x")
    await check()
    async with store.engine.begin() as connection:
        await connection.execute(update(der_record).values(sync_state="retry"))
    await check()
    if store.engine.dialect.name == "postgresql":
        async with store.engine.begin() as connection:
            await records.compact_tally(connection)
            assert (await connection.execute(text("SELECT count(*) FROM der_record_tally"))).scalar_one() == 1
            await connection.execute(text("TRUNCATE der_record"))
        await check()


async def test_a_redrive_that_met_a_record_in_flight_is_applied_again_after_the_pass(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """A pass that answers for a record re-driven meanwhile leaves it due but notes its content as
    sent; `redrive_again` forgets that once more, for such records only: not for ones the pass
    sent after their re-drive, parked ones, or ones left to retry; and only once."""
    from datetime import UTC, datetime, timedelta

    await load(store, [record(nmi_for(i)) for i in range(4)])
    await sync_once(settings, store)
    before = {r.nmi: r for r in await store.load_records([nmi_for(i) for i in range(4)])}
    since = datetime.now(UTC) - timedelta(seconds=1)
    await store.redrive(Selection(nmis=tuple(nmi_for(i) for i in range(4))), actor="olivia")
    answered = [RecordOutcome(nmi, before[nmi].revision, (PartOutcome(Part.INSTALLATION, Result.SYNCED, "h"),))
                for nmi in (nmi_for(0), nmi_for(2))]  # in flight: answers for the revision before
    answered.append(RecordOutcome(nmi_for(3), before[nmi_for(3)].revision,
                                  (PartOutcome(Part.INSTALLATION, Result.RETRY),)))
    await store.record_outcomes(answered)
    await store.park(nmi_for(2), actor="olivia", reason="fix")
    assert await store.redrive_again(since) == 1  # 8001000000 only
    [again] = await store.load_records([nmi_for(0)])
    assert again.due and again.inst_synced_hash is None and again.sync_state == "pending"
    assert await store.redrive_again(since) == 0
    await sync_once(settings, store)
    assert await store.redrive_again(since) == 0 and await store.count_due() == 0
