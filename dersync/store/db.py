"""Opening the store: engine, connection settings per database, and migrations at start.

SQLite is the embedded default (one process); PostgreSQL is the production store. The same
SQLAlchemy Core code runs on both; only connection set-up differs here.
"""

from __future__ import annotations

import functools
import os
import socket
import sqlite3
from contextlib import closing
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from dersync.errors import StoreNotFound, StoreUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
#: How long a writer waits for SQLite's lock before the store counts as unavailable (the default
#: of the `sqlite_busy_timeout_seconds` setting).
SQLITE_BUSY_SECONDS = 30.0
#: PostgreSQL advisory lock that serialises migrations between replicas ("DERSMIGR" in ASCII;
#: not the leadership lock of dersync.daemon.leader).
MIGRATION_LOCK_KEY = 0x444552534D494752
#: How this process names itself to PostgreSQL (at most 63 characters are kept).
APPLICATION_NAME = f"dersync {socket.gethostname()[:40]} pid {os.getpid()}"
#: Tables whose presence makes a database a dersync store (the migrations' own and the records').
STORE_TABLES = frozenset({"alembic_version", "der_record"})


#: Prepared statements each pooled connection keeps (the drivers keep 100 or 128). A statement
#: with an IN list is a new statement for every length of list, and one for a batch of 500 NMIs
#: holds tens of kilobytes: at the drivers' figure a first pass's resident memory went on rising
#: with the store's size (SQLite's own count of its memory: +10 MB from 10,000 records to
#: 200,000; +8 MB by 60,000 on PostgreSQL), and flat at this one, at the same speed (preparing
#: again costs microseconds, once per batch). benchmarks/README.md, scale_first_pass.
CACHED_STATEMENTS = 16


def make_engine(url: str, *, pool_size: int = 10, busy_timeout_seconds: float = SQLITE_BUSY_SECONDS,
                create: bool = True) -> AsyncEngine:
    """An async engine tuned for the database behind `url`.

    `busy_timeout_seconds` (SQLite only) is how long a writer waits for another connection's
    lock before the store counts as unavailable. With `create` a SQLite file's folder and the
    file are made here; without it nothing is (see `require_store`).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if create and database and database != ":memory:":
            folder = Path(database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(
                    f"store {describe_url(url)} is unreachable: cannot create folder {str(folder)!r}"
                    f" ({exc.strerror or type(exc).__name__})"
                ) from None
            if not parsed.query.get("uri"):
                _open_sqlite_file(url, database)
        engine = create_async_engine(url, connect_args={"timeout": busy_timeout_seconds,
                                                        "cached_statements": CACHED_STATEMENTS})
        event.listen(engine.sync_engine, "connect", functools.partial(_sqlite_pragmas, busy_timeout_seconds))
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # The application name shows in pg_stat_activity which dersync process holds which session
    # (the same host and pid as the User-Agent AEMO sees), for DBAs and the failover tests.
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                               connect_args={"server_settings": {"application_name": APPLICATION_NAME},
                                             "prepared_statement_cache_size": CACHED_STATEMENTS})


def _open_sqlite_file(url: str, database: str) -> None:
    """Open the file once before the async driver does. When aiosqlite cannot open a file it
    raises, but leaves its worker thread to post to the event loop afterwards; a command that
    then exits at once printed that thread's traceback ("Event loop is closed"). Found here
    instead, synchronously, the failure is one clean line."""
    try:
        sqlite3.connect(database).close()
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"store {describe_url(url)} is unreachable: {exc}") from None


async def require_store(engine: AsyncEngine) -> None:
    """Raise StoreNotFound unless the database already holds dersync's tables; writes nothing.

    A SQLite file is looked at through a read-only connection of its own, before the engine's
    first connection would switch it to WAL (a write, and new files beside it).
    """
    url = str(engine.url)
    if engine.dialect.name == "sqlite":
        tables = _sqlite_tables(url, make_url(url).database or "")
    else:
        try:
            async with engine.connect() as connection:
                tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        except (OperationalError, DBAPIError, OSError) as exc:
            raise StoreUnavailable(f"store {describe_url(url)} is unreachable: {_reason(exc)}") from None
    if not tables >= STORE_TABLES:
        raise StoreNotFound(f"no store at {describe_url(url)} (DERSYNC_DATABASE_URL): "
                            "nothing has been imported or synced there yet")


def _sqlite_tables(url: str, database: str) -> set[str]:
    """The tables of an existing SQLite file (none when there is no file), opened read-only."""
    path = Path(database)
    if not path.is_file():
        return set()
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"store {describe_url(url)} is unreachable: {exc}") from None


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The engine for transactions that write: on SQLite they take the write lock at BEGIN.

    A deferred SQLite transaction that reads and then writes cannot wait for the lock once
    another connection has written (SQLite answers "database is locked" without consulting
    the busy timeout), so concurrent outcome recording failed under load. `BEGIN IMMEDIATE`
    queues writers on the busy timeout instead, across processes too (an operator's ETL job).
    """
    if engine.dialect.name == "sqlite":
        return engine.execution_options(sqlite_begin="IMMEDIATE")
    return engine


def _sqlite_begin(connection) -> None:  # type: ignore[no-untyped-def]
    """Emit BEGIN ourselves (the driver's own transaction handling is switched off)."""
    mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def _sqlite_pragmas(busy_timeout_seconds: float, dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    """WAL lets readers (status, exceptions list) run beside the sync pass's writes.

    The driver's implicit transactions are switched off so that `_sqlite_begin` decides
    when and how a transaction starts (SQLAlchemy's documented recipe for pysqlite/aiosqlite).
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; safe to run at every start."""
    try:
        async with writer(engine).begin() as connection:
            if engine.dialect.name == "postgresql":
                # Replicas starting together would otherwise create the same tables at once and
                # all but one fail; the lock is held until this transaction ends.
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            await connection.run_sync(_upgrade)
    except (OperationalError, DBAPIError, OSError) as exc:
        raise StoreUnavailable(f"store {describe_url(str(engine.url))} is unreachable: {_reason(exc)}") from None


def _upgrade(sync_connection) -> None:  # type: ignore[no-untyped-def]
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = sync_connection
    command.upgrade(config, "head")


async def ping(connection: AsyncConnection) -> None:
    await connection.execute(text("SELECT 1"))


def describe_url(url: str) -> str:
    """The URL as the operator wrote it (`sqlite:///...`, `postgresql://...`: without the asyncio
    driver the settings add) and without its password: safe for logs and error messages."""
    parsed = make_url(url)
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
