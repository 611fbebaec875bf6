"""The store on SQLite and PostgreSQL: change tracking, outcomes, exceptions."""

from __future__ import annotations

import json

from dersync.store import InputRow, PartOutcome, RecordOutcome, Store, ValidationException
from dersync.store.validation_exceptions import PartExceptions, sync_many
from dersync.vocabulary import Level

NMI = "8001000005"


async def due(store: Store) -> list[tuple[str, int]]:
    return [(r.nmi, r.revision) async for batch in store.due_batches(100) for r in batch]


async def test_changes_make_records_due_and_identical_writes_do_not(store: Store) -> None:
    """The change trigger marks a record due (and bumps its revision) only when its content
    changes, so an ETL rewriting identical rows causes no work."""
    await store.upsert_inputs([InputRow("8001000001", nmi_details='{"a": 1}')])
    await store.record_outcomes([RecordOutcome("8001000001", 1, [PartOutcome("nmi", "synced", "h")])])
    assert await due(store) == []

    await store.upsert_inputs([InputRow("8001000001", nmi_details='{"a": 1}')])
    assert await due(store) == []

    await store.upsert_inputs([InputRow("8001000001", installation='{"b": 2}')])
    assert await due(store) == [("8001000001", 2)]


async def test_absent_part_is_kept(store: Store) -> None:
    """An import line with only one part replaces that part and keeps the other."""
    await store.upsert_inputs([InputRow("8001000002", nmi_details='{"a": 1}', installation='{"b": 1}')])
    await store.upsert_inputs([InputRow("8001000002", installation='{"b": 2}')])
    [record] = await store.load_records(["8001000002"])
    assert json.loads(record.nmi_details) == {"a": 1} and json.loads(record.installation) == {"b": 2}


async def test_outcome_for_a_stale_read_leaves_the_record_due(store: Store) -> None:
    """If the record changed after the pass read it, recording the outcome of the old copy keeps
    the record due, so the newer content is pushed next pass."""
    await store.upsert_inputs([InputRow("8001000003", nmi_details='{"a": 1}')])
    [record] = await store.load_records(["8001000003"])
    await store.upsert_inputs([InputRow("8001000003", nmi_details='{"a": 2}')])

    await store.record_outcomes([RecordOutcome("8001000003", record.revision, [PartOutcome("nmi", "synced", "h1")])])

    assert await due(store) == [("8001000003", 2)]


async def test_retry_outcome_keeps_the_record_due_and_unsynced(store: Store) -> None:
    """A retriable failure never marks a record synced."""
    await store.upsert_inputs([InputRow("8001000004", nmi_details='{"a": 1}')])
    await store.mark_attempts(["8001000004"])
    await store.record_outcomes([RecordOutcome("8001000004", 1, [PartOutcome("nmi", "retry")])])
    [record] = await store.load_records(["8001000004"])
    assert record.nmi_synced_hash is None and record.attempt_started_at is not None
    assert (await store.status())["records"]["retry"] == 1 and await due(store) == [("8001000004", 1)]


async def test_exceptions_are_recorded_once_and_resolved_when_gone(store: Store) -> None:
    """The same exception reported on two pushes is one open row; one that no longer appears in
    a push covering its level is resolved; levels the push could not see stay open."""
    await store.upsert_inputs([InputRow(NMI, installation="{}")])
    first = ValidationException(level="first", code="1006", detail="bad type", transaction_id="t1")
    second = ValidationException(level="second", code="2023", detail="unknown model", nsp_connection_id="C1")
    async with store.transaction() as conn:
        from dersync.store import utcnow

        await sync_many(conn, [PartExceptions(NMI, "installation", frozenset({"first", "second"}), [first, second])],
                        utcnow())
        await sync_many(conn, [PartExceptions(NMI, "installation", frozenset({"first"}), [first])], utcnow())
    rows = await store.list_exceptions(open_only=True)
    assert sorted((r["level"], r["code"]) for r in rows) == [("first", "1006"), ("second", "2023")]

    async with store.transaction() as conn:
        await sync_many(conn, [PartExceptions(NMI, "installation", frozenset(Level), [])], utcnow())
    assert await store.list_exceptions(open_only=True) == []
    assert len(await store.list_exceptions()) == 2


async def test_outcomes_recorded_together_apply_in_order(store: Store) -> None:
    """A pass records outcomes a batch per transaction: each record ends as its last outcome in
    the batch says (exceptions opened and resolved, AEMO's ids replaced, a retry left due with
    its attempt mark), exactly as if they had been recorded one at a time."""
    from dersync.store import EquipmentId

    a, b, c = "8001000006", "8001000007", "8001000008"
    await store.upsert_inputs([InputRow(nmi, nmi_details="{}", installation="{}") for nmi in (a, b, c)])
    await store.mark_attempts([a, b, c])
    flagged = ValidationException(level="second", code="2023", detail="unknown model", nsp_connection_id="C1")
    refused = ValidationException(level="first", code="1006", detail="bad type", transaction_id="t2")
    every_level = frozenset({"local", "schema", "first", "second"})
    await store.record_outcomes([
        RecordOutcome(a, 1, [PartOutcome("installation", "synced", "h1", every_level, [flagged],
                                         equipment=[EquipmentId("C1", "", 11, "Conditional")])]),
        RecordOutcome(b, 1, [PartOutcome("installation", "rejected", "h2", every_level, [refused])]),
        RecordOutcome(c, 1, [PartOutcome("installation", "retry")]),
        RecordOutcome(a, 1, [PartOutcome("installation", "synced", "h3", every_level, [],
                                         transaction_id="t3",
                                         equipment=[EquipmentId("C1", "", 12, "Confirmed")])]),
    ])

    rows = await store.list_exceptions()
    assert [(r["nmi"], r["code"], r["status"]) for r in rows] == [(a, "2023", "resolved"), (b, "1006", "open")]
    assert await store.load_ids([a]) == {a: {("C1", ""): 12}}
    assert await due(store) == [(c, 1)]
    records = {r.nmi: r for r in await store.load_records([a, b, c])}
    assert records[a].inst_synced_hash == "h3" and records[a].attempt_started_at is None
    assert records[b].inst_rejected_hash == "h2" and records[b].sync_state == "rejected"
    assert records[c].attempt_started_at is not None and records[c].sync_state == "retry"


async def test_a_pass_left_running_is_closed_when_the_next_one_starts(store: Store) -> None:
    """A pass whose process died (or whose store failed at its end) is not shown as running
    forever: the next pass of its kind closes it as interrupted, saying why."""
    from dersync.store.passes import ABANDONED

    abandoned = await store.start_pass("sync")
    reconcile = await store.start_pass("reconcile")
    await store.start_pass("sync")

    status = await store.status()
    async with store.transaction() as connection:
        from sqlalchemy import select

        from dersync.store.tables import sync_pass

        rows = {r.id: r for r in await connection.execute(select(sync_pass))}
    assert rows[abandoned].status == "interrupted" and rows[abandoned].error == ABANDONED
    assert rows[abandoned].finished_at is not None
    assert rows[reconcile].status == "running"  # another kind: untouched
    assert status["last_sync"]["status"] == "running"
