"""What the CLI commands do, as coroutines that take the settings (easy to call from tests)."""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import AsyncIterator

import click

from dersync.cli.output import progress_bar, render
from dersync.settings import Settings
from dersync.store import Store
from dersync.store.importer import import_file

EXCEPTION_COLUMNS = ("nmi", "part", "level", "code", "detail", "field", "nspConnectionId", "nspDeviceId",
                     "transactionId", "status", "lastSeen")
MAX_PROBLEMS_SHOWN = 50


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    store = await Store.open(settings.database_url)
    try:
        yield store
    finally:
        await store.close()


async def do_import(settings: Settings, path: Path) -> int:
    async with open_store(settings) as store:
        bar, update = progress_bar(f"Importing {path.name}", sys.stdout.isatty())
        size = path.stat().st_size
        with bar or nullcontext():
            report = await import_file(store, path, on_progress=lambda done: update(done, size))
    for problem in report.problems[:MAX_PROBLEMS_SHOWN]:
        click.echo(f"{path}: {problem}", err=True)
    if len(report.problems) > MAX_PROBLEMS_SHOWN:
        click.echo(f"... and {len(report.problems) - MAX_PROBLEMS_SHOWN} more problems", err=True)
    click.echo(f"Imported {report.stored} records from {path} ({report.lines} lines read, "
                  f"{len(report.problems)} skipped)")
    return 0


async def do_sync(settings: Settings) -> int:
    from dersync.sync import sync_once

    settings.require_aemo()  # before touching the store: configuration problems come first
    async with open_store(settings) as store:
        bar, update = progress_bar("Syncing", sys.stdout.isatty())
        with bar or nullcontext():
            summary = await sync_once(settings, store, progress=update)
    click.echo(summary.line())
    return 0


async def do_exceptions(settings: Settings, *, open_only: bool, nmi: str | None, level: str | None,
                        fmt: str) -> int:
    async with open_store(settings) as store:
        rows = await store.list_exceptions(open_only=open_only, nmi=nmi, level=level)
    render(rows, EXCEPTION_COLUMNS, fmt, title="Validation exceptions")
    return 0


async def do_status(settings: Settings, fmt: str) -> int:
    import json

    async with open_store(settings) as store:
        status = await store.status()
    if fmt == "json":
        sys.stdout.write(json.dumps(status, indent=2, default=str) + "\n")
        return 0
    records = status["records"]
    click.echo(f"Store: {store.description}")
    click.echo("Records: " + ", ".join(f"{k} {v}" for k, v in records.items()) + f" (due now: {status['due']})")
    click.echo("Open exceptions: " + ", ".join(f"{k} {v}" for k, v in status["open_exceptions"].items()))
    last = status["last_sync"]
    if last:
        summary = last["summary"]
        click.echo(f"Last sync pass: {last['status']}, started {last['started_at']}, "
                      + ", ".join(f"{k} {v}" for k, v in summary.items()))
    else:
        click.echo("Last sync pass: none yet")
    return 0
