"""`dersync status` as an operator reads it."""

from __future__ import annotations

from dersync.store import Store
from tests.cli.conftest import DersyncProcess

PASSWORD = "pw-s3cret"


async def test_status_names_the_store_as_the_operator_wrote_it(database_url: str, store: Store,
                                                               dersync: DersyncProcess) -> None:
    """The `Store:` line shows the URL as configured (`sqlite:///...`, `postgresql://...`), not the
    asyncio driver's (`sqlite+aiosqlite`, `postgresql+asyncpg`), and never the password."""
    if database_url.startswith("postgresql://postgres@"):  # the test server trusts any password
        configured = database_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
        shown = database_url.replace("postgres@", "postgres:***@", 1)
    else:
        configured = shown = database_url

    ran = await dersync("status", DERSYNC_DATABASE_URL=configured)

    assert ran.returncode == 0, ran.stderr
    assert f"Store: {shown}\n" in ran.stdout
    assert PASSWORD not in ran.stdout + ran.stderr
