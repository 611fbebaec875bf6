"""The submission ledger in the store: appended with the pinned fields, read per NMI newest
first, one entry with its body, a period streamed in batches, and pruned in small batches."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from dersync.aemo.sent import SentBody, SentRequest
from dersync.errors import StoreUnavailable
from dersync.store import Store, ledger

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
PINNED = ["id", "sentAt", "answeredAt", "nmi", "part", "method", "path", "status", "transactionId", "codes",
          "attempt", "passId", "bodySha256"]


def sent(nmi: str | None, *, at: datetime = NOW, method: str = "PUT", status: int | None = 200,
         body: dict[str, object] | None = None, codes: tuple[str, ...] = (), attempt: int = 1) -> SentRequest:
    packed = SentBody.of(json.dumps(body).encode(), compress=True) if body is not None else None
    return SentRequest(sent_at=at, answered_at=at + timedelta(milliseconds=40) if status is not None else None,
                       nmi=nmi, api="installation", method=method, path=f"/installation/{nmi}", status=status,
                       error=None if status is not None else "timed out: TimeoutError",
                       transaction_id=f"tx-{nmi}-{at.minute}-{attempt}" if status is not None else None,
                       codes=codes, attempt=attempt, pass_id=None,
                       body_sha256=packed.sha256 if packed else None, body_gzip=packed.gzipped if packed else None)


async def test_rows_come_back_with_the_pinned_fields_newest_first(store: Store) -> None:
    """Each request is a row with the fields scripts rely on; an NMI's rows come newest first,
    a request that got no answer has no status and says why."""
    await store.append_ledger([
        sent("8001000001", at=NOW, body={"data": {"nmi": "8001000001"}}),
        sent("8001000001", at=NOW + timedelta(minutes=1), status=422, codes=("1006", "1008"),
             body={"data": {"nmi": "8001000001"}}),
        sent("8001000001", at=NOW + timedelta(minutes=2), status=None, body={"data": {"nmi": "8001000001"}}),
        sent("8001000002", at=NOW, method="GET"),
    ])
    rows = await store.ledger_for_nmi("8001000001")
    assert [r["status"] for r in rows] == [None, 422, 200]
    assert all(list(r)[:len(PINNED)] == PINNED for r in rows)
    assert rows[1]["codes"] == ["1006", "1008"] and rows[0]["error"] == "timed out: TimeoutError"
    assert rows[0]["transactionId"] is None and rows[2]["transactionId"] == "tx-8001000001-0-1"
    assert rows[2]["sentAt"] == NOW and rows[2]["answeredAt"] == NOW + timedelta(milliseconds=40)


async def test_a_write_keeps_its_body_and_a_read_has_none(store: Store) -> None:
    """A write's body comes back exactly as sent, and its hash is the SHA-256 of those bytes; a
    GET has no body to show."""
    body = {"data": {"nmi": "8001000003", "approvedCapacity": 10.0}}
    await store.append_ledger([sent("8001000003", body=body), sent("8001000003", method="GET",
                                                                   at=NOW + timedelta(minutes=1))])
    write, read = sorted(await store.ledger_for_nmi("8001000003"), key=lambda r: r["id"])
    found = await store.ledger_body(write["id"])
    assert found is not None
    entry, raw = found
    assert raw is not None and json.loads(raw) == body
    assert entry["bodySha256"] == hashlib.sha256(raw).hexdigest()
    assert await store.ledger_body(read["id"]) == (read, None)
    assert await store.ledger_body(10**9) is None


async def test_a_period_streams_in_batches_oldest_first(store: Store) -> None:
    """Exporting a period reads it a batch at a time (flat memory), oldest first, and nothing
    sent outside [start, end)."""
    await store.append_ledger([sent(f"80010001{i:02d}", at=NOW + timedelta(hours=i)) for i in range(30)])
    batches = [batch async for batch in store.ledger_between(NOW + timedelta(hours=5), NOW + timedelta(hours=25),
                                                             batch_size=7)]
    assert [len(b) for b in batches] == [7, 7, 6]
    times = [row["sentAt"] for batch in batches for row in batch]
    assert times == sorted(times) and times[0] == NOW + timedelta(hours=5) and times[-1] == NOW + timedelta(hours=24)


async def test_pruning_drops_old_bodies_first_then_old_rows_in_small_batches(store: Store) -> None:
    """Rows past the row retention are deleted and bodies past the body retention dropped, each
    at most a batch per call, so a backlog is worked off in short transactions."""
    body = {"data": {"nmi": "8001000004"}}
    old = [sent("8001000004", at=NOW - timedelta(days=3000, minutes=i), body=body) for i in range(5)]
    middle = [sent("8001000004", at=NOW - timedelta(days=500, minutes=i), body=body) for i in range(5)]
    recent = [sent("8001000004", at=NOW - timedelta(days=1), body=body)]
    await store.append_ledger(old + middle + recent)
    rows_before, bodies_before = NOW - timedelta(days=2555), NOW - timedelta(days=400)
    assert await store.prune_ledger(rows_before=rows_before, bodies_before=bodies_before, batch_size=3) == (3, 3)
    while any(await store.prune_ledger(rows_before=rows_before, bodies_before=bodies_before, batch_size=3)):
        pass
    rows = await store.ledger_for_nmi("8001000004")
    assert len(rows) == 6
    kept = {r["sentAt"] > bodies_before: (await store.ledger_body(r["id"]) or ({}, None))[1] for r in rows}
    assert kept[True] is not None and kept[False] is None


async def test_rows_commit_or_roll_back_with_the_transaction_they_are_appended_in(store: Store) -> None:
    """Rows appended in a transaction that fails are gone with it, whether they were its first
    statement or came after others (PostgreSQL appends by COPY, past SQLAlchemy, so the
    transaction SQLAlchemy begins lazily must have begun); a transaction that succeeds keeps them."""
    for first in (True, False):
        with pytest.raises(RuntimeError, match="outcome failed"):
            async with store.transaction() as connection:
                if not first:
                    await ledger.append(connection, [sent("8001000005", at=NOW)])
                await ledger.append(connection, [sent("8001000005", at=NOW + timedelta(minutes=1))])
                raise RuntimeError("outcome failed")
    assert await store.ledger_for_nmi("8001000005") == []
    async with store.transaction() as connection:
        await ledger.append(connection, [sent("8001000005", at=NOW)])
    assert len(await store.ledger_for_nmi("8001000005")) == 1


async def test_a_row_the_database_refuses_is_the_stores_error_with_its_reason(store: Store) -> None:
    """A row the database refuses (no method: the column is NOT NULL) is reported as the store's
    error with the database's reason, not as a driver traceback, on PostgreSQL's COPY as on
    SQLite's INSERT, and nothing of the batch is kept."""
    refused = sent("8001000006")._replace(method=None)
    with pytest.raises(StoreUnavailable, match=r"(?i)null.*method"):
        await store.append_ledger([sent("8001000006"), refused])
    assert await store.ledger_for_nmi("8001000006") == []
