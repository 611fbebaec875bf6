"""`dersync demo`: the main job end to end on the embedded default, with no configuration.

It starts the AEMO simulator on a free loopback port, imports the bundled sample records
(realistic WA NMIs and equipment, some of which AEMO rejects or flags) into `./dersync-demo.db`,
runs one sync pass with a progress bar, and prints what AEMO accepted, rejected and flagged.
The simulator keeps its register in `./dersync-demo-aemo.json`, so a second run in the same
folder shows the point of change detection: unchanged records cause no requests at all.
"""

from __future__ import annotations

import sys
from datetime import tzinfo
from importlib import resources
from pathlib import Path
from typing import Any

from rich.table import Table

from dersync.cli.output import console, progress_bar, render
from dersync.logs import configure_logging
from dersync.settings import Settings
from dersync.store import Store
from dersync.store.importer import import_file
from dersync.wording import plural

DEMO_DB = Path("dersync-demo.db")
DEMO_AEMO_STATE = Path("dersync-demo-aemo.json")
DEMO_PARTICIPANT = "DEMONSP"
SHOWN_EXCEPTIONS = 15


def bundled_records() -> Path:
    return Path(str(resources.files("dersync") / "data" / "sample-records.jsonl"))


async def run_demo(records: Path | None = None) -> int:
    from dersync.mock import SimulatorConfig, run_simulator
    from dersync.sync import sync_once

    records = records or bundled_records()
    sim_config = SimulatorConfig(state_file=str(DEMO_AEMO_STATE), participant_id=DEMO_PARTICIPANT)
    local: dict[str, Any] = {"database_url": f"sqlite:///{DEMO_DB}", "log_format": "console", "log_level": "WARNING"}
    # Before the simulator starts, whose events would otherwise reach stdout through structlog's
    # default logger, in the middle of the demo's output.
    configure_logging(Settings(**local))
    zone = Settings(**local).zone
    async with run_simulator(sim_config) as sim:
        settings = Settings(**{**local, **sim.client_settings()})
        console.print(f"AEMO simulator listening on {sim.url}", markup=False, highlight=False)
        store = await Store.open(settings.database_url, busy_timeout_seconds=settings.sqlite_busy_timeout_seconds)
        try:
            report = await import_file(store, records)
            console.print(f"Imported {plural(report.stored, 'record')} from {records.name} into {DEMO_DB} "
                          f"({plural(len(report.problems), 'line')} skipped)", markup=False, highlight=False)
            bar, update = progress_bar("Syncing with AEMO", sys.stdout.isatty())
            if bar is not None:
                with bar:
                    summary = await sync_once(settings, store, progress=update)
            else:
                summary = await sync_once(settings, store, progress=update)
            if summary.records:
                _print_summary(summary.as_dict())
            else:
                # Nothing was due, so the pass looked at nothing: a table of zeros would read
                # as if the records had vanished. Say what happened instead.
                held = sum((await store.status())["records"].values())
                sent = "no requests sent" if not summary.requests else f"{plural(summary.requests, 'request')} sent"
                console.print(f"{plural(held, 'record')} unchanged since the last run: {sent}",
                              markup=False, highlight=False)
            exceptions = await store.list_exceptions(open_only=True)
        finally:
            await store.close()
    _print_exceptions(exceptions, zone)
    console.print("\nRun `dersync demo` again in this folder: unchanged records cause no requests. "
                  f"Inspect with `DERSYNC_DATABASE_URL=sqlite:///{DEMO_DB} dersync exceptions list --open`.",
                  markup=False, highlight=False)
    return 0


def _print_summary(counts: dict[str, object]) -> None:
    table = Table(title="Sync pass")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for label, key in (
        ("records looked at", "records"), ("records sent to AEMO", "sent"),
        ("NMI details created", "nmi_created"), ("NMI details updated", "nmi_updated"),
        ("installations created", "installations_created"), ("installations updated", "installations_updated"),
        ("unchanged (no request)", "unchanged"),
        ("rejected locally (never sent)", "rejected_local"), ("rejected by AEMO: schema (400)", "rejected_schema"),
        ("rejected by AEMO: first level (422)", "rejected_first"),
        ("flagged Conditional (second level)", "flagged_conditional"), ("left due for retry", "left_due"),
        ("HTTP requests", "requests"), ("throttled (429)", "throttled"), ("seconds", "seconds"),
    ):
        table.add_row(label, str(counts[key]))
    console.print(table)


def _print_exceptions(rows: list[dict[str, object]], zone: tzinfo) -> None:
    if not rows:
        console.print("No open exceptions.")
        return
    render(rows[:SHOWN_EXCEPTIONS], "table", zone=zone,
           columns=("nmi", "level", "code", "detail", "nspConnectionId", "transactionId"),
           title=f"Open exceptions ({len(rows)} in all, first {min(len(rows), SHOWN_EXCEPTIONS)} shown)")
