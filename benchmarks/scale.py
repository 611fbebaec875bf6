"""Stores of 10,000 to 1,000,000 records in minutes: the bulk set-up the scale benchmarks share.

Going through `dersync import` (or `Store.upsert_inputs`) costs ~10k records/s and a pass costs
~1k/s: a million records would take hours to prepare. Here rows go straight into the tables, in
the state the product would have left them:

* `load_new`: records as an import leaves them (input columns only; the defaults make them due,
  revision 1, `pending`);
* `load_synced`: records as a completed pass leaves them (not due, `synced`, the synced hashes
  the next pass compares against, at AEMO, AEMO's equipment ids); `rejected_every` puts some in
  `rejected` (with their rejected hash) and `due_every` leaves some `pending` and due, for
  `status` to have something to count;
* `load_exceptions`: validation exceptions (open and resolved, every level), several per NMI;
* `load_history`: a few sync passes and a finished reconciliation with findings.

`der_record`'s change trigger (migration 0001) fires on UPDATE only (SQLite: `AFTER UPDATE OF
nmi_details, installation`, PostgreSQL: `BEFORE UPDATE`): it marks a row due and bumps its
revision when its content changes. Bulk INSERT/COPY never fires it, so the rows carry the state
set here (or the columns' defaults), exactly as a pass or an import would have left them.

SQLite: the standard library's sqlite3 with `executemany`, 50,000 rows a transaction, after
`Store.open` has created the schema. PostgreSQL: asyncpg's `copy_records_to_table` (COPY).
Record content comes from `dersync.testing.record` (the records the other benchmarks use),
rendered once with a placeholder NMI and filled in by string replacement; the content hash the
sync pass would compute is checked against `dersync.models.check_record` for a few records
before each load, so a change to the models cannot make the set-up silently wrong.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import make_url

#: Replaced by each record's NMI in the rendered templates (no record text holds it otherwise).
PLACEHOLDER = "@@NMI@@"
#: Rows per transaction (SQLite) or per COPY (PostgreSQL).
CHUNK = 50_000


@dataclass(frozen=True)
class Templates:
    """One record rendered with a placeholder NMI: the stored text and the canonical JSON."""

    details_text: str
    installation_text: str
    details_canonical: str
    installation_canonical: str

    @classmethod
    def build(cls) -> Templates:
        from dersync.models.validation import canonical_json
        from dersync.testing import installation, nmi_details

        details, inst = nmi_details(PLACEHOLDER), installation(PLACEHOLDER)
        return cls(json.dumps(details, ensure_ascii=False), json.dumps(inst, ensure_ascii=False),
                   canonical_json(details).decode(), canonical_json(inst).decode())

    def record(self, nmi: str) -> tuple[str, str, str, str]:
        """(nmi_details text, installation text, NMI details hash, installation hash) for `nmi`."""
        return (self.details_text.replace(PLACEHOLDER, nmi), self.installation_text.replace(PLACEHOLDER, nmi),
                hashlib.sha256(self.details_canonical.replace(PLACEHOLDER, nmi).encode()).hexdigest(),
                hashlib.sha256(self.installation_canonical.replace(PLACEHOLDER, nmi).encode()).hexdigest())

    def check(self, indices: Sequence[int]) -> None:
        """The texts are what an import stores and the hashes what a pass computes, or raise."""
        from dersync.models import check_record
        from dersync.settings import Enumerations
        from dersync.store.importer import to_input_row
        from dersync.testing import nmi_for, record

        for index in indices:
            nmi = nmi_for(index)
            details, inst, details_hash, inst_hash = self.record(nmi)
            row = to_input_row(record(nmi))
            checked = check_record(nmi, details, inst, Enumerations(), 10_000_000)
            assert not isinstance(row, str)
            if (row.nmi_details, row.installation) != (details, inst) or checked.nmi_details is None \
                    or checked.installation is None or (checked.nmi_details.content_hash, checked.installation
                                                        .content_hash) != (details_hash, inst_hash):
                raise AssertionError(f"bulk set-up no longer matches what dersync stores and hashes ({nmi})")


def nmis(count: int, start: int = 0) -> Iterator[tuple[int, str]]:
    from dersync.testing import nmi_for

    for index in range(start, start + count):
        yield index, nmi_for(index)


# --- rows ---------------------------------------------------------------------------------------

NEW_COLUMNS = ("nmi", "nmi_details", "installation")
SYNCED_COLUMNS = ("nmi", "nmi_details", "installation", "revision", "due", "sync_state", "nmi_synced_hash",
                  "inst_synced_hash", "nmi_rejected_hash", "inst_rejected_hash", "nmi_at_aemo", "inst_at_aemo",
                  "last_attempt_at", "last_synced_at", "last_transaction_id")
EQUIPMENT_COLUMNS = ("nmi", "nsp_connection_id", "nsp_device_id", "aemo_id", "installation_stage")
EXCEPTION_COLUMNS = ("nmi", "part", "level", "code", "title", "detail", "field", "transaction_id",
                     "nsp_connection_id", "nsp_device_id", "status", "first_seen_at", "last_seen_at", "resolved_at")


def new_rows(count: int, start: int = 0) -> Iterator[tuple[Any, ...]]:
    templates = Templates.build()
    templates.check([start, start + count - 1])
    for _index, nmi in nmis(count, start):
        details, inst, _, _ = templates.record(nmi)
        yield nmi, details, inst


def synced_rows(count: int, *, rejected_every: int = 0, due_every: int = 0,
                now: datetime | None = None) -> Iterator[tuple[Any, ...]]:
    """Rows as a completed pass leaves them. Every `rejected_every`-th record's installation was
    rejected by AEMO (state rejected, not due); every `due_every`-th is pending and due."""
    templates = Templates.build()
    templates.check([0, count - 1])
    now = now or datetime.now(UTC)
    for index, nmi in nmis(count):
        details, inst, details_hash, inst_hash = templates.record(nmi)
        if due_every and index % due_every == due_every - 1:
            yield (nmi, details, inst, 1, True, "pending", None, None, None, None, None, None, None, None, None)
        elif rejected_every and index % rejected_every == rejected_every - 2:
            yield (nmi, details, inst, 1, False, "rejected", details_hash, None, None, inst_hash, True, False, now,
                   None, f"tx-{index}")
        else:
            yield (nmi, details, inst, 1, False, "synced", details_hash, inst_hash, None, None, True, True, now, now,
                   f"tx-{index}")


def equipment_rows(count: int) -> Iterator[tuple[Any, ...]]:
    """AEMO's ids for each record's connection and device (as a pass's answers leave them)."""
    for index, nmi in nmis(count):
        connection = f"C-{nmi}-1"
        yield nmi, connection, "", 100_001 + index, "Confirmed"
        yield nmi, connection, f"{connection}-D1", 500_001 + index, "Confirmed"


#: (level, code, part, field or None, title): the mix of exceptions an operator's store holds.
EXCEPTION_KINDS = (
    ("second", "2023", "installation", None, "Equipment not on the approved list"),
    ("second", "2024", "installation", None, "Device not on the approved list"),
    ("first", "1012", "installation", "acConnections[0].commissioningDate", "Invalid date"),
    ("first", "1006", "installation", "acConnections[0].equipmentType", "Unknown equipment type"),
    ("local", "LOCAL", "installation", "approvedCapacity", None),
    ("schema", "1020", "nmi", "postCode", "Schema validation failed"),
)


def exception_rows(count: int, records: int, *, resolved_every: int = 5,
                   now: datetime | None = None) -> Iterator[tuple[Any, ...]]:
    """`count` exceptions over the first `records` NMIs (several per NMI when count > records),
    every level; every `resolved_every`-th one resolved, the rest open."""
    from dersync.testing import nmi_for

    now = now or datetime.now(UTC)
    earlier = now - timedelta(days=3)
    for index in range(count):
        nmi = nmi_for(index % records)
        level, code, part, field, title = EXCEPTION_KINDS[index % len(EXCEPTION_KINDS)]
        connection = f"C-{nmi}-1" if level == "second" else None
        resolved = index % resolved_every == resolved_every - 1
        yield (nmi, part, level, code, title, f"{title or 'is not valid'} (exception {index})", field,
               None if level == "local" else f"tx-{index:08d}", connection,
               f"{connection}-D1" if code == "2024" else None, "resolved" if resolved else "open", earlier, now,
               now if resolved else None)


# --- writing them -------------------------------------------------------------------------------


async def create_schema(url: str) -> None:
    """An empty store with dersync's schema (migrations, triggers) at `url`."""
    from dersync.store import Store

    store = await Store.open(_async_url(url))
    await store.close()


async def insert(url: str, table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> int:
    """Insert `rows` into `table` in large transactions; returns the number inserted."""
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_insert(make_url(url).database or "", table, columns, rows)
    return await _postgres_copy(url, table, columns, rows)


def _sqlite_insert(path: str, table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> int:
    statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    total = 0
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA synchronous=OFF")  # the set-up connection only; the store keeps NORMAL
        for chunk in _chunks(rows, CHUNK):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(statement, [tuple(_sqlite_value(v) for v in row) for row in chunk])
            db.execute("COMMIT")
            total += len(chunk)
    return total


def _sqlite_value(value: Any) -> Any:
    """As SQLAlchemy stores it in SQLite: datetimes as `YYYY-MM-DD HH:MM:SS.ffffff` text (UTC)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


async def _postgres_copy(url: str, table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> int:
    import asyncpg

    parsed = make_url(url).set(drivername="postgresql")
    connection = await asyncpg.connect(parsed.render_as_string(hide_password=False))
    total = 0
    try:
        for chunk in _chunks(rows, CHUNK):
            await connection.copy_records_to_table(table, records=chunk, columns=list(columns))
            total += len(chunk)
        await connection.execute(f"ANALYZE {table}")
    finally:
        await connection.close()
    return total


def _chunks(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _async_url(url: str) -> str:
    from dersync.settings import Settings

    return Settings(database_url=url).database_url


# --- what the benchmarks call -------------------------------------------------------------------


@dataclass
class Timed:
    rows: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


async def timed(step: Callable[[], Any]) -> Timed:
    started = time.monotonic()
    rows = await step()
    return Timed(int(rows), time.monotonic() - started)


async def load_new(url: str, count: int) -> Timed:
    """`count` new records (as imported, never synced): every one due."""
    await create_schema(url)
    return await timed(lambda: insert(url, "der_record", NEW_COLUMNS, new_rows(count)))


async def load_synced(url: str, count: int, *, rejected_every: int = 0, due_every: int = 0,
                      with_ids: bool = True) -> Timed:
    """`count` records as a completed pass leaves them (and AEMO's equipment ids for each)."""
    await create_schema(url)

    async def both() -> int:
        rows = await insert(url, "der_record", SYNCED_COLUMNS,
                            synced_rows(count, rejected_every=rejected_every, due_every=due_every))
        if with_ids:
            rows += await insert(url, "equipment_id", EQUIPMENT_COLUMNS, equipment_rows(count))
        return rows

    return await timed(both)


async def load_exceptions(url: str, count: int, records: int) -> Timed:
    return await timed(lambda: insert(url, "validation_exception", EXCEPTION_COLUMNS,
                                      exception_rows(count, records)))


async def load_history(url: str, records: int, findings: int = 1000) -> None:
    """A few finished sync passes, and a finished reconciliation with `findings` drift findings."""
    from dersync.store import Store

    store = await Store.open(_async_url(url))
    try:
        for _ in range(3):
            pass_id = await store.start_pass("sync")
            await store.finish_pass(pass_id, "ok", {"records": records, "created": 0, "requests": 0})
        pass_id = await store.start_pass("reconcile")
        rows = [{"nmi": nmi, "kind": ("different_at_aemo", "missing_at_aemo", "conditional_at_aemo")[i % 3],
                 "part": "installation", "detail": "benchmark finding", "fields": []}
                for i, nmi in nmis(min(findings, records))]
        await store.save_drift(pass_id, rows)
        await store.finish_pass(pass_id, "ok", {"records": records, "findings": len(rows)})
    finally:
        await store.close()
