"""The migrations and dersync/store/tables.py describe the same schema: a store migrated from
nothing to the newest revision has exactly the tables, columns and indexes the code uses."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dersync.store import Store
from dersync.store.tables import metadata


def _differences(sync_connection: Any) -> list[Any]:
    context = MigrationContext.configure(sync_connection, opts={"compare_type": False})
    found = compare_metadata(context, metadata)
    # Alembic's own bookkeeping table is not ours to describe.
    return [d for d in found if not (d[0] == "remove_table" and d[1].name == "alembic_version")]


async def test_a_migrated_store_has_exactly_the_schema_the_code_uses(store: Store) -> None:
    """Every table, column and index in tables.py exists after migrating, and nothing else does
    (a column added to tables.py without a migration, or the other way round, shows here)."""
    async with store.engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == []
