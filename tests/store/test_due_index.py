"""Picking due work scales: the store's "what is due" queries are answered from an index.

The statements checked are the ones the store really sends (captured from the engine while
`due_batches`, `count_due` and `status` run), explained with their real parameters on a table of
20,000 records of which 1% are due, as after an ordinary day's import. A plan that reads the whole
table would cost a full scan per batch and per metrics scrape at a million records.
"""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event, text

from dersync.store import Store
from dersync.store.db import MIGRATIONS
from dersync.store.tables import der_record
from dersync.testing import nmi_for

ROWS = 20_000
DUE_EVERY = 100  # 1% due
INDEX = "ix_der_record_due"


async def fill(store: Store) -> None:
    """ROWS records, one in DUE_EVERY due, written in a few large statements."""
    rows = [{"nmi": nmi_for(i), "nmi_details": "{}", "due": i % DUE_EVERY == 0} for i in range(ROWS)]
    async with store.engine.begin() as connection:
        for start in range(0, ROWS, 5_000):
            await connection.execute(der_record.insert(), rows[start : start + 5_000])
    if store.engine.dialect.name == "postgresql":
        # What autovacuum does for a real table; a freshly filled one has no statistics yet.
        async with store.engine.connect() as connection:
            await connection.execute(text("ANALYZE der_record"))
            await connection.commit()


async def due_statements(store: Store) -> list[tuple[str, Any]]:
    """The SQL (with parameters) the store sends to pick due batches, count them and report status."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "der_record" in statement and "due" in statement:
            seen.append((statement, parameters))

    event.listen(store.engine.sync_engine, "before_cursor_execute", capture)
    try:
        batches = [batch async for batch in store.due_batches(50)]
        assert sum(len(batch) for batch in batches) == ROWS // DUE_EVERY
        assert await store.count_due() == ROWS // DUE_EVERY
        assert (await store.status())["due"] == ROWS // DUE_EVERY
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", capture)
    return seen


async def plan_of(store: Store, statement: str, parameters: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN " if store.engine.dialect.name == "sqlite" else "EXPLAIN "
    async with store.engine.connect() as connection:
        rows = await connection.exec_driver_sql(prefix + statement, parameters)
        return "\n".join(" ".join(str(part) for part in row) for row in rows)


async def test_due_queries_use_the_due_index_not_a_table_scan(store: Store) -> None:
    """On SQLite and PostgreSQL, every query that picks due records (a batch in NMI order, and the
    first and a later batch alike), counts them for the pass or reports them to /metrics reads the
    partial index on due records; none scans the table."""
    await fill(store)
    statements = await due_statements(store)
    kinds = {"batch": 0, "count": 0}
    for statement, parameters in statements:
        kinds["batch" if "ORDER BY" in statement else "count"] += 1
        plan = await plan_of(store, statement, parameters)
        assert INDEX in plan, f"{statement}\n{parameters}\n{plan}"
        if store.engine.dialect.name == "postgresql":
            assert "Seq Scan" not in plan, plan
        else:
            table_reads = [line for line in plan.splitlines() if "der_record" in line]
            assert table_reads and all(INDEX in line for line in table_reads), plan
    # Every batch of the pass (here 4 of 50, and the empty read that ends it) and both counts.
    assert kinds["batch"] == ROWS // DUE_EVERY // 50 + 1 and kinds["count"] == 2, statements


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_postgresql_due_batch_is_an_index_scan_in_nmi_order(store: Store) -> None:
    """On PostgreSQL the batch query is an Index Scan on the partial index that also yields NMI
    order, so the ORDER BY ... LIMIT stops after one batch instead of sorting every due row."""
    await fill(store)
    statement, parameters = next(s for s in await due_statements(store) if "ORDER BY" in s[0])
    plan = await plan_of(store, statement, parameters)
    assert f"Index Scan using {INDEX}" in plan or f"Index Only Scan using {INDEX}" in plan, plan
    assert "Sort" not in plan and "Seq Scan" not in plan, plan


def _alembic(sync_connection: Any, verb: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = sync_connection
    getattr(command, verb)(config, revision)


HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_store_from_before_0003_gets_the_usable_index_at_start(store: Store) -> None:
    """A SQLite store created by an earlier release (index `WHERE due`, which SQLite never used for
    `due = 1` queries) is rebuilt by migration 0003 the next time the service opens it."""
    async with store.engine.begin() as connection:  # back to what the 0002 release left behind
        await connection.run_sync(lambda sync: _alembic(sync, "downgrade", "0002"))
    url = str(store.engine.url)
    await store.close()

    reopened = await Store.open(url)
    try:
        async with reopened.engine.connect() as connection:
            sql = (await connection.exec_driver_sql(
                f"SELECT sql FROM sqlite_master WHERE name = '{INDEX}'")).scalar_one()
            version = (await connection.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar_one()
        # 0008 narrowed it further to records a pass takes (due and not parked), in the same form.
        assert sql.endswith("WHERE due = 1 AND parked_at IS NULL") and version == HEAD, (sql, version)
    finally:
        await reopened.close()
