"""`dersync compliance`: every AC connection against its submission deadline, and a summary.

JSON and CSV stream (flat memory, any number of connections); a table is laid out once all its
rows are in, so for the whole register prefer `--format csv` or narrow it with `--state`,
`--from` and `--to`. Only reads: the store is opened with `create=False`.
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime
from typing import Any

import click

from dersync.cli.commands import open_store
from dersync.cli.output import console, in_zone, render
from dersync.compliance import ComplianceRow, DeadlineRules, Selection, Summary, compliance_rows
from dersync.settings import Settings
from dersync.vocabulary import ComplianceState, values
from dersync.wording import plural

#: JSON's and CSV's fields, in this order; the first seven are pinned (scripts rely on them).
FIELDS = ("nmi", "nspConnectionId", "commissioningDate", "deadline", "acceptedAt", "state", "blockingException",
          "daysLeft", "acceptedBy", "transactionId")
TABLE_COLUMNS = ("nmi", "nspConnectionId", "commissioningDate", "deadline", "acceptedAt", "state", "daysLeft",
                 "blockingException")
MONTH_COLUMNS = ("month", *values(ComplianceState), "total")


async def do_compliance(settings: Settings, *, start: date | None, end: date | None, state: str | None,
                        fmt: str, now: datetime | None = None) -> int:
    zone = settings.zone
    rules = DeadlineRules.from_settings(settings)
    today = rules.today(now or datetime.now(zone))
    selection = Selection(start, end, ComplianceState(state) if state else None)
    summary = Summary()
    table: list[dict[str, Any]] = []
    writer = csv.DictWriter(sys.stdout, fieldnames=list(FIELDS), extrasaction="ignore") if fmt == "csv" else None
    first = True
    async with open_store(settings, create=False) as store:
        # Only once the store is known to exist: a missing one prints no half document.
        if writer is not None:
            writer.writeheader()
        elif fmt == "json":
            sys.stdout.write(f'{{\n"asOf": {json.dumps(today.isoformat())},\n"connections": [')
        async for batch in compliance_rows(store, rules, today, selection):
            for row in batch:
                summary.add(row)
                shown = _shown(row, zone)
                if writer is not None:
                    writer.writerow(shown)
                elif fmt == "json":
                    sys.stdout.write(("\n" if first else ",\n") + json.dumps(shown, ensure_ascii=False))
                    first = False
                else:
                    table.append(shown)
            sys.stdout.flush()
    counts = summary.as_dict()
    if fmt == "json":
        sys.stdout.write("\n],\n\"summary\": " + json.dumps(_with_rules(counts, rules), indent=2) + "\n}\n")
    elif fmt == "csv":
        click.echo(_line(counts, rules, today), err=True)
    else:
        render(table, fmt, zone=zone, columns=TABLE_COLUMNS,
               title=f"AC connections against their submission deadline, as of {today.isoformat()}")
        render(counts["byMonth"], fmt, zone=zone, columns=MONTH_COLUMNS, title="By month of commissioning")
        console.print(_line(counts, rules, today), markup=False, highlight=False)
    return 0


def _shown(row: ComplianceRow, zone: Any) -> dict[str, Any]:
    """Dates as YYYY-MM-DD, the acceptance time in the operator's zone with its offset."""
    shown: dict[str, Any] = in_zone(row.as_row(), zone)
    for name in ("commissioningDate", "deadline"):
        if shown[name] is not None:
            shown[name] = shown[name].isoformat()
    return shown


def _with_rules(counts: dict[str, Any], rules: DeadlineRules) -> dict[str, Any]:
    return {**counts, "deadlineBusinessDays": rules.business_days, "warningDays": rules.warning_days}


def _line(counts: dict[str, Any], rules: DeadlineRules, today: date) -> str:
    total = sum(counts["byState"].values())
    states = ", ".join(f"{state} {count}" for state, count in counts["byState"].items())
    return (f"{plural(total, 'AC connection')}: {states} (as of {today.isoformat()}; deadline "
            f"{plural(rules.business_days, 'business day')} after commissioning)")
