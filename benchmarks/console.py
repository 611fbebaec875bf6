"""The operator console at scale: how fast the overview and the exceptions inbox answer with
1,000,000 records and 100,000 exceptions in the store, on SQLite and on PostgreSQL.

The store is filled with one INSERT ... SELECT per table (a recursive CTE on SQLite,
generate_series on PostgreSQL: minutes, not hours), shaped like a network operator's year:
records mostly synced, 1% due, 100 parked; exceptions over 90 days, 70% open, most of them
second-level 2023s from one unlisted inverter model. The console is served as the daemon
serves it (the admin app, the console mounted on it) and asked over HTTP with a signed-in
session, as a browser asks; each page is timed from request to the last byte.

    python benchmarks/run.py console
    python benchmarks/run.py console --console-records 100000 --console-exceptions 10000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from benchmarks.run import Result, benchmark

TARGET_MS = 200.0
SAMPLES = 40
WARM_UP = 3
#: (name, path): what an operator opens; every one is held to the target.
PAGES = [
    ("overview", "/"),
    ("overview, live part (polled)", "/overview/live"),
    ("inbox: open, newest first", "/exceptions"),
    ("inbox: second 2023 open", "/exceptions?level=second&code=2023&status=open"),
    ("inbox: page 100", "/exceptions?page=100"),
    ("inbox: first seen in 7 days", "/exceptions?age=7d"),
    ("inbox: NMI starts with", "/exceptions?status=any&nmiPrefix=800012"),
    ("inbox: one NMI", "/exceptions?status=any&nmi=8000123450"),
    ("inbox: by code", "/exceptions/codes"),
    ("API: exceptions, second", "/api/v1/exceptions?level=second&status=open&pageSize=50"),
]
OPERATOR, PASSWORD = "bench", "benchmark-password"


def _record_json() -> tuple[str, str]:
    """One realistic record's two parts as JSON text, the NMI written as 8001000000 (replaced)."""
    from dersync.testing import record

    item = record("8001000000")
    return json.dumps(item["nmiDetails"]), json.dumps(item["installation"])


def _fill_sql(dialect: str, records: int, exceptions: int) -> list[tuple[str, dict[str, Any]]]:
    """The statements that fill the store: records, exceptions, passes, drift."""
    details, installation = _record_json()
    step = max(1, records // exceptions)
    if dialect == "sqlite":
        seq = "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :n - 1) "
        nmi = "printf('80%08d', i)"
        ago = ("strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || (i % 90) || ' days', '-' || (i % 86400) || ' seconds')"
               " || '.000000'")
        now = "strftime('%Y-%m-%d %H:%M:%S', 'now') || '.000000'"
        source = "seq"
        parked = "CASE WHEN i % 10000 = 7 THEN " + now + " END"
    else:
        seq = ""
        nmi = "'80' || lpad(i::text, 8, '0')"
        ago = "now() - (i % 90) * interval '1 day' - (i % 86400) * interval '1 second'"
        now = "now()"
        source = "generate_series(0, :n - 1) AS i"
        parked = "CASE WHEN i % 10000 = 7 THEN now() END"
    state = ("CASE WHEN i % 100 < 90 THEN 'synced' WHEN i % 100 < 95 THEN 'pending' "
             "WHEN i % 100 < 98 THEN 'rejected' ELSE 'retry' END")
    records_sql = (
        f"{seq}INSERT INTO der_record (nmi, nmi_details, installation, due, sync_state, nmi_synced_hash, "
        "inst_synced_hash, nmi_at_aemo, inst_at_aemo, last_attempt_at, last_synced_at, last_transaction_id, "
        "parked_at, parked_by, parked_reason) "
        f"SELECT {nmi}, replace(:details, '8001000000', {nmi}), replace(:installation, '8001000000', {nmi}), "
        "i % 100 = 99, " + state + ", 'a1b2c3', 'd4e5f6', true, true, " + now + ", " + now + ", "
        f"'tx-' || i, {parked}, CASE WHEN i % 10000 = 7 THEN 'bench' END, "
        f"CASE WHEN i % 10000 = 7 THEN 'data fix in progress' END FROM {source}"
    )
    # 60% 2023 and 20% 2024 (second level), 10% first level over 7 codes, 5% local, 5% schema.
    level = ("CASE WHEN i % 10 < 8 THEN 'second' WHEN i % 10 = 8 THEN 'first' "
             "WHEN i % 20 = 9 THEN 'local' ELSE 'schema' END")
    code = ("CASE WHEN i % 10 < 6 THEN '2023' WHEN i % 10 < 8 THEN '2024' WHEN i % 10 = 8 THEN '1' || (i % 7 + 100) "
            "WHEN i % 20 = 9 THEN 'LOCAL' ELSE '1020' END")
    status = "CASE WHEN (i / 10) % 10 < 7 THEN 'open' ELSE 'resolved' END"  # 70% open, of every level
    # Exceptions spread over the records: every `step`-th record has one.
    exc_nmi = f"printf('80%08d', i * {step})" if dialect == "sqlite" else f"'80' || lpad((i * {step})::text, 8, '0')"
    exceptions_sql = (
        f"{seq}INSERT INTO validation_exception (nmi, part, level, code, title, detail, field, transaction_id, "
        "nsp_connection_id, status, first_seen_at, last_seen_at, resolved_at) "
        f"SELECT {exc_nmi}, 'installation', {level}, {code}, 'Inverter model not on approved list', "
        "'Inverter AP-5000-UNLISTED (Acme Power) is not on the approved equipment list', "
        f"'acConnections[0].details.modelNumber', 'txid-' || i, 'C-' || {exc_nmi} || '-1', {status}, {ago}, {now}, "
        f"CASE WHEN (i / 10) % 10 >= 7 THEN {now} END FROM {source}"
    )
    finished = "{\"records\": 1000000, \"sent\": 1200, \"synced\": 1150, \"requests\": 2400}"
    passes_sql = (
        f"{seq}INSERT INTO sync_pass (kind, started_at, finished_at, status, summary) "
        f"SELECT CASE WHEN i % 5 = 4 THEN 'reconcile' ELSE 'sync' END, {now}, {now}, 'ok', :summary FROM {source}"
    )
    return [(records_sql, {"n": records, "details": details, "installation": installation}),
            (exceptions_sql, {"n": exceptions}), (passes_sql, {"n": 50, "summary": finished})]


@asynccontextmanager
async def _store(dialect: str, folder: str, postgres_url: str | None) -> AsyncIterator[Any]:
    """An open store on a fresh database (`run.fresh_database`: a SQLite file, or a PostgreSQL
    database dropped afterwards)."""
    from benchmarks.run import fresh_database
    from dersync.settings import Settings
    from dersync.store import Store

    async with fresh_database(dialect, folder, postgres_url) as url:
        store = await Store.open(Settings(database_url=url).database_url)
        try:
            yield store
        finally:
            await store.close()


async def _fill(store: Any, records: int, exceptions: int) -> float:
    from sqlalchemy import text

    from dersync.console.passwords import hash_password

    started = time.monotonic()
    dialect = store.engine.dialect.name
    async with store.engine.begin() as connection:
        for statement, parameters in _fill_sql(dialect, records, exceptions):
            await connection.execute(text(statement), parameters)
    if dialect == "postgresql":
        # What autovacuum does for a table this size soon after such a load (statistics, and the
        # visibility map that lets counts read the indexes alone).
        async with store.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("VACUUM ANALYZE"))
    await store.save_user(OPERATOR, "operator", await hash_password(PASSWORD))
    return time.monotonic() - started


async def _measure(store: Any) -> dict[str, dict[str, float]]:
    """p50, p95 and max milliseconds per page, over SAMPLES requests each (after WARM_UP)."""
    import re

    from dersync.admin import AdminServer, Metrics
    from dersync.console import Console, LiveJobs, Runtime
    from dersync.settings import Settings

    settings = Settings(database_url=str(store.engine.url.render_as_string(hide_password=False)))
    runtime = Runtime(role=lambda: "leader", replica=lambda: "bench", token_state=lambda: "ok", client=lambda: None,
                      live=LiveJobs(lambda: None, settings.rate_limit_per_minute))

    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {}

    server = AdminServer("127.0.0.1", 0, Metrics(), ready, store.status, console=Console(settings, store, runtime))
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    timings: dict[str, dict[str, float]] = {}
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(base + "/login") as response:
                token = re.search(r'name="csrf" value="([^"]+)"', await response.text())
            assert token is not None
            async with http.post(base + "/login", data={"name": OPERATOR, "password": PASSWORD,
                                                        "csrf": token.group(1)}) as response:
                assert response.status == 200, response.status
            for name, path in PAGES:
                samples = []
                for index in range(WARM_UP + SAMPLES):
                    started = time.perf_counter()
                    async with http.get(base + path) as response:
                        await response.read()
                        assert response.status == 200, (path, response.status)
                    if index >= WARM_UP:
                        samples.append((time.perf_counter() - started) * 1000)
                samples.sort()
                timings[name] = {"p50": round(statistics.median(samples), 1),
                                 "p95": round(samples[int(0.95 * len(samples)) - 1], 1),
                                 "max": round(samples[-1], 1)}
    finally:
        await server.stop()
    return timings


@benchmark
async def console(args: argparse.Namespace) -> Result:
    """p95 of the overview's and the inbox's answers with 1,000,000 records and 100,000
    exceptions, on SQLite and (when a server is given) PostgreSQL."""
    records, exceptions = args.console_records, args.console_exceptions
    postgres_url = args.postgres_url or os.environ.get("DERSYNC_TEST_POSTGRES_URL")
    details: dict[str, Any] = {"records": records, "exceptions": exceptions, "samples": SAMPLES}
    worst: list[tuple[float, str]] = []
    for dialect in ("sqlite", "postgresql") if postgres_url else ("sqlite",):
        with tempfile.TemporaryDirectory() as folder:
            async with _store(dialect, folder, postgres_url) as store:
                filled = await _fill(store, records, exceptions)
                status = await store.status()
                timings = await _measure(store)
        details[dialect] = {"fill_seconds": round(filled, 1), "records_by_state": status["records"],
                            "due": status["due"], "parked": status["parked"],
                            "open_exceptions": status["open_exceptions"], "ms": timings}
        worst.extend((t["p95"], f"{dialect} {name}") for name, t in timings.items())
    slowest, where = max(worst)
    measured = "; ".join(
        f"{dialect}: p95 " + ", ".join(f"{name} {t['p95']:.0f} ms" for name, t in details[dialect]["ms"].items())
        for dialect in ("sqlite", "postgresql") if dialect in details)
    return Result("console", f"{records:,} records, {exceptions:,} exceptions; slowest p95 {slowest:.0f} ms "
                             f"({where}). {measured}",
                  f"p95 < {TARGET_MS:.0f} ms for every page, SQLite and PostgreSQL",
                  "met" if slowest < TARGET_MS and len(worst) == 2 * len(PAGES) else
                  ("met (SQLite only: no PostgreSQL server given)" if slowest < TARGET_MS else "NOT met"),
                  details)
