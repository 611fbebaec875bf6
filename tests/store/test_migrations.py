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
    dialect = sync_connection.dialect.name
    # Alembic's own bookkeeping table is not ours to describe, and an index tables.py builds on
    # one dialect only (`ddl_if`) is not expected on the other.
    return [d for d in found if not (d[0] == "remove_table" and d[1].name == "alembic_version")
            and not (d[0] == "add_index" and _other_dialects_only(d[1], dialect))]


def _other_dialects_only(index: Any, dialect: str) -> bool:
    """Alembic compares copies of tables.py's indexes, without their `ddl_if`: look it up."""
    table = metadata.tables[index.table.name]
    original = next(candidate for candidate in table.indexes if candidate.name == index.name)
    condition = getattr(original, "_ddl_if", None)
    return condition is not None and condition.dialect is not None and condition.dialect != dialect


async def test_a_migrated_store_has_exactly_the_schema_the_code_uses(store: Store) -> None:
    """Every table, column and index in tables.py exists after migrating, and nothing else does
    (a column added to tables.py without a migration, or the other way round, shows here)."""
    async with store.engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == []
