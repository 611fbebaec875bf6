"""Read-only commands (`status`, `exceptions list`, `drift list`, `sync --dry-run`, `compliance`) never create a
store: pointed where there is none, they say so and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from tests.cli.conftest import DersyncProcess

READ_ONLY = (["status"], ["status", "--format", "json"], ["exceptions", "list"], ["drift", "list", "--format", "csv"],
             ["sync", "--dry-run"], ["compliance", "--format", "json"], ["compliance", "--format", "csv"])
PASSWORD = "pw-s3cret"


async def tables_in(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    finally:
        await connection.close()
    return [row["table_name"] for row in rows]


async def assert_no_store_message(dersync: DersyncProcess, configured: str, shown: str) -> None:
    for args in READ_ONLY:
        ran = await dersync(*args, DERSYNC_DATABASE_URL=configured)
        assert ran.returncode == 1, (args, ran.stdout, ran.stderr)
        assert ran.stderr.splitlines() == [f"dersync: no store at {shown} (DERSYNC_DATABASE_URL): "
                                           "nothing has been imported or synced there yet"], args
        assert ran.stdout == "" and PASSWORD not in ran.stderr


async def test_read_only_commands_create_no_store(database_url: str, dersync: DersyncProcess,
                                                  tmp_path: Path) -> None:
    """Against a SQLite path in a folder that does not exist, or a PostgreSQL database without
    dersync's tables, each read-only command exits 1 with one line naming the store (password
    hidden), and afterwards there is still no folder, no file and no table."""
    if database_url.startswith("sqlite"):
        folder = tmp_path / "new" / "deeper"
        url = f"sqlite:///{folder}/dersync.db"
        await assert_no_store_message(dersync, url, url)
        assert not (tmp_path / "new").exists()
    else:
        configured = database_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
        shown = database_url.replace("postgres@", "postgres:***@", 1)
        await assert_no_store_message(dersync, configured, shown)
        assert await tables_in(database_url) == []


async def test_a_sqlite_file_without_dersync_tables_is_no_store(dersync: DersyncProcess, tmp_path: Path) -> None:
    """An existing SQLite file that is not a dersync store (empty, or some other program's) is
    "no store" for the read-only commands, and they leave it exactly as it was."""
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    url = f"sqlite:///{other}"

    await assert_no_store_message(dersync, url, url)

    assert other.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]
