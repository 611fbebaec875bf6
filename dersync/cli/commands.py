"""What the CLI commands do, as coroutines that take the settings (easy to call from tests)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext
from datetime import tzinfo
from pathlib import Path
from typing import Any

import click

from dersync.cli.main import EXIT_FAILED
from dersync.cli.output import local_time, progress_bar, render, write_json
from dersync.settings import Settings
from dersync.store import Selection, Store
from dersync.store.importer import import_file
from dersync.wording import plural

EXCEPTION_COLUMNS = ("nmi", "part", "level", "code", "detail", "field", "nspConnectionId", "nspDeviceId",
                     "transactionId", "status", "lastSeen")
#: CSV feeds spreadsheets and scripts: every field an exception has, as in JSON.
EXCEPTION_CSV_COLUMNS = ("nmi", "part", "level", "code", "title", "detail", "field", "transactionId",
                         "nspConnectionId", "connectionId", "nspDeviceId", "deviceId", "status", "firstSeen",
                         "lastSeen", "resolvedAt")
MAX_PROBLEMS_SHOWN = 50


@asynccontextmanager
async def open_store(settings: Settings, *, create: bool = True) -> AsyncIterator[Store]:
    """The store; commands that only read pass `create=False` (see `Store.open`)."""
    store = await Store.open(settings.database_url, create=create,
                             busy_timeout_seconds=settings.sqlite_busy_timeout_seconds)
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
        click.echo(f"... and {plural(len(report.problems) - MAX_PROBLEMS_SHOWN, 'more problem')}", err=True)
    click.echo(f"Imported {plural(report.stored, 'record')} from {path} ({plural(report.lines, 'line')} read, "
               f"{len(report.problems)} skipped)")
    failure = report.failure()
    if failure is not None:
        click.echo(f"dersync: {path} {failure}", err=True)
        return EXIT_FAILED
    return 0


async def do_sync(settings: Settings) -> int:
    from dersync.gc_tuning import settle_after_start_up
    from dersync.sync import sync_once

    settings.require_aemo()  # before touching the store: configuration problems come first
    async with open_store(settings) as store:
        settle_after_start_up()
        bar, update = progress_bar("Syncing", sys.stdout.isatty())
        with bar or nullcontext():
            summary = await sync_once(settings, store, progress=update)
    click.echo(summary.line())
    return 0


async def do_exceptions(settings: Settings, *, open_only: bool, nmi: str | None, level: str | None,
                        fmt: str) -> int:
    zone = settings.zone
    async with open_store(settings, create=False) as store:
        rows = await store.list_exceptions(open_only=open_only, nmi=nmi, level=level)
    render(rows, fmt, zone=zone, columns=EXCEPTION_COLUMNS, csv_columns=EXCEPTION_CSV_COLUMNS,
           title="Validation exceptions")
    return 0


async def do_status(settings: Settings, fmt: str) -> int:
    zone = settings.zone
    async with open_store(settings, create=False) as store:
        status = await store.status()
    if fmt == "json":
        write_json(status, zone)
        return 0
    records = status["records"]
    click.echo(f"Store: {store.description}")
    click.echo("Records: " + ", ".join(f"{k} {v}" for k, v in records.items())
               + f" (due now: {status['due']}, parked: {status['parked']})")
    click.echo("Open exceptions: " + ", ".join(f"{k} {v}" for k, v in status["open_exceptions"].items()))
    last = status["last_sync"]
    if last:
        summary = last["summary"]
        click.echo(f"Last sync pass: {last['status']}, started {local_time(last['started_at'], zone)}, "
                      + ", ".join(f"{k} {v}" for k, v in summary.items()))
    else:
        click.echo("Last sync pass: none yet")
    sender = status.get("sender")
    if sender and sender["holder"]:
        click.echo(f"Sending to AEMO: {sender['holder']} (lease generation {sender['generation']}, "
                   f"last renewed {local_time(sender['renewed_at'], zone)})")
    else:
        click.echo("Sending to AEMO: no process holds the sender lease")
    last = status.get("last_reconcile")
    if last:
        counts = {k: v for k, v in last["summary"].items() if k.endswith("_at_aemo")}
        click.echo(f"Last reconciliation: {last['status']}, started {local_time(last['started_at'], zone)}, "
                   + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


# --- reconciliation ------------------------------------------------------------------------------

DRIFT_COLUMNS = ("nmi", "kind", "part", "fields", "detail")
#: `reconcile` prints the findings it made now; whether --repair may act on each is part of them.
RECONCILE_CSV_COLUMNS = (*DRIFT_COLUMNS, "repairable")
#: `drift list` prints stored findings; when and by which reconciliation pass each was found.
DRIFT_LIST_CSV_COLUMNS = (*DRIFT_COLUMNS, "found_at", "reconcile_pass_id")
DRY_RUN_COLUMNS = ("nmi", "action", "nmi_details", "installation", "requests", "diff", "problems")
#: Differences shown per row in a table (all of them are in JSON).
MAX_DIFFS_SHOWN = 10


def describe_diffs(diffs: list[dict[str, Any]]) -> str:
    """Differences as lines `path: AEMO <value> / store <value>` for tables and CSV."""
    lines = [f"{d['path']}: AEMO {_short(d.get('aemo'))} / store {_short(d.get('store'))}"
             for d in diffs[:MAX_DIFFS_SHOWN]]
    if len(diffs) > MAX_DIFFS_SHOWN:
        lines.append(f"... {len(diffs) - MAX_DIFFS_SHOWN} more")
    return "\n".join(lines)


def _short(value: Any) -> str:
    import json

    text = "-" if value is None else json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= 80 else text[:77] + "..."


async def do_reconcile(settings: Settings, *, fmt: str, repair: bool | None, sweep: Sequence[str] = (),
                       nmi_details: bool = False) -> int:
    from dersync.aemo.client import AemoClient
    from dersync.reconcile import reconcile

    settings.require_aemo()
    zone = settings.zone
    async with open_store(settings) as store, AemoClient(settings) as client:
        await client.check_credentials()
        report = await reconcile(
            settings, store, client,
            repair=settings.reconcile_repair if repair is None else repair,
            sweep=[{"installationStage": stage} for stage in sweep], nmi_details=nmi_details,
        )
    rows = [f.as_row() for f in report.findings]
    _render_findings(rows, fmt, zone=zone, csv_columns=RECONCILE_CSV_COLUMNS, title="Drift found by reconciliation")
    click.echo(report.line(), err=fmt != "table")
    return 0


async def do_drift_list(settings: Settings, *, nmi: str | None, kind: str | None, fmt: str) -> int:
    zone = settings.zone
    async with open_store(settings, create=False) as store:
        last, rows = await store.latest_drift(nmi=nmi, kind=kind)
    if last is None:
        if fmt == "table":
            click.echo("No reconciliation has run yet.")
        else:
            render([], fmt, zone=zone, columns=DRIFT_COLUMNS, csv_columns=DRIFT_LIST_CSV_COLUMNS)
        return 0
    title = (f"Drift found by reconciliation pass {last['id']} "
             f"({last['status']}, started {local_time(last['started_at'], zone)})")
    _render_findings(rows, fmt, zone=zone, csv_columns=DRIFT_LIST_CSV_COLUMNS, title=title)
    return 0


def _render_findings(rows: list[dict[str, Any]], fmt: str, *, zone: tzinfo, csv_columns: Sequence[str],
                     title: str) -> None:
    if fmt == "json":
        render(rows, fmt, zone=zone, columns=DRIFT_COLUMNS)
        return
    flat = [{**row, "fields": describe_diffs(row["fields"])} for row in rows]
    render(flat, fmt, zone=zone, columns=DRIFT_COLUMNS, csv_columns=csv_columns, title=title)


async def do_sync_dry_run(settings: Settings, fmt: str) -> int:
    from dersync.aemo.client import AemoClient
    from dersync.reconcile import plan_dry_run

    settings.require_aemo()
    zone = settings.zone
    async with open_store(settings, create=False) as store, AemoClient(settings) as client:
        await client.check_credentials()
        rows = await plan_dry_run(settings, store, client)
    if fmt == "json":
        render(rows, fmt, zone=zone, columns=DRY_RUN_COLUMNS)
        return 0
    flat = [{**row, "requests": ", ".join(row["requests"]), "diff": describe_diffs(row["diff"]),
             "problems": "\n".join(row["problems"])} for row in rows]
    render(flat, fmt, zone=zone, columns=DRY_RUN_COLUMNS,
           title="What the next sync pass would do (dry run: nothing sent)")
    if fmt == "table":
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["action"]] = counts.get(row["action"], 0) + 1
        click.echo(f"{plural(len(rows), 'due record')}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    return 0


# --- operator actions and console users ----------------------------------------------------------

REDRIVE_COLUMNS = ("nmi", "syncState", "due", "parked")
USER_COLUMNS = ("name", "role", "created", "updated")


def cli_actor() -> str:
    """Who acts from the command line, as the action log records it: `cli:OS-USER`."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container's arbitrary user)
        import os

        return f"cli:uid {os.getuid()}"


async def do_redrive(settings: Settings, selection: Selection, *, preview: bool, reason: str | None,
                     expect: str | None, fmt: str) -> int:
    zone = settings.zone
    async with open_store(settings, create=False) as store:
        if preview:
            resolved = await store.redrive_preview(selection)
            states: dict[str, dict[str, Any]] = {}
            for start in range(0, len(resolved.nmis), 1000):
                states.update(await store.record_states(resolved.nmis[start : start + 1000]))
            rows = [{"nmi": nmi, **states.get(nmi, {})} for nmi in resolved.nmis]
            if fmt == "json":
                write_json({"preview": True, "count": len(resolved.nmis), "parked": len(resolved.parked),
                            "fingerprint": resolved.fingerprint, "nmis": rows}, zone)
            else:
                render(rows, fmt, zone=zone, columns=REDRIVE_COLUMNS,
                       title=f"Re-drive preview: {plural(len(resolved.nmis), 'NMI')} (nothing changed)")
            if fmt == "table":
                click.echo(f"{plural(len(resolved.nmis), 'NMI')} would be re-driven ({len(resolved.parked)} parked, "
                           f"they wait until unparked). To act on exactly these: add --expect "
                           f"{resolved.fingerprint}")
            return 0
        action_id, resolved = await store.redrive(selection, actor=cli_actor(), reason=reason, expect=expect)
    if fmt == "json":
        write_json({"preview": False, "count": len(resolved.nmis), "parked": len(resolved.parked),
                    "fingerprint": resolved.fingerprint, "actionId": action_id}, zone)
    else:
        click.echo(f"Re-drove {plural(len(resolved.nmis), 'NMI')} (action {action_id}): the next sync pass sends "
                   f"them{f'; {len(resolved.parked)} parked wait until unparked' if resolved.parked else ''}")
    return 0


async def do_park(settings: Settings, nmi: str, reason: str) -> int:
    async with open_store(settings, create=False) as store:
        newly = await store.park(nmi, actor=cli_actor(), reason=reason)
    click.echo(f"Parked {nmi}: sync passes skip it until `dersync unpark {nmi}`" if newly
               else f"{nmi} was already parked: reason updated")
    return 0


async def do_unpark(settings: Settings, nmi: str, reason: str | None) -> int:
    async with open_store(settings, create=False) as store:
        changed = await store.unpark(nmi, actor=cli_actor(), reason=reason)
    click.echo(f"Unparked {nmi}: the next sync pass takes it if it is due" if changed
               else f"{nmi} was not parked: nothing changed")
    return 0


async def do_add_user(settings: Settings, name: str, role: str, password: str) -> int:
    from dersync.console.passwords import hash_password
    from dersync.vocabulary import ActionKind

    async with open_store(settings) as store:
        created = await store.save_user(name, role, await hash_password(password))
        await store.log_action(ActionKind.USER_SAVED, actor=cli_actor(),
                               detail={"user": name, "role": role, "created": created, "password_changed": True})
    click.echo(f"{'Created' if created else 'Updated'} console user {name} (role {role})"
               + ("" if created else "; their sessions ended"))
    return 0


async def do_list_users(settings: Settings, fmt: str) -> int:
    async with open_store(settings, create=False) as store:
        rows = await store.list_users()
    render(rows, fmt, zone=settings.zone, columns=USER_COLUMNS, title="Console users")
    return 0


async def do_remove_user(settings: Settings, name: str) -> int:
    from dersync.vocabulary import ActionKind

    async with open_store(settings, create=False) as store:
        removed = await store.remove_user(name)
        if removed:
            await store.log_action(ActionKind.USER_REMOVED, actor=cli_actor(), detail={"user": name})
    if not removed:
        click.echo(f"dersync: no console user named {name}", err=True)
        return EXIT_FAILED
    click.echo(f"Removed console user {name}; their sessions ended")
    return 0
