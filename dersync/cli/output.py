"""Rendering rows for people (rich tables) and for programs (JSON, CSV).

Every time a command prints goes through `local_time`: in the operator's zone (setting
`timezone`) with its offset, the same in tables, JSON and CSV.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dersync.errors import ConfigError
from dersync.settings import Settings

T = TypeVar("T")
console = Console()
errors = Console(stderr=True)


def operator_zone(settings: Settings) -> tzinfo:
    """The zone the operator reads times in; a name that is no zone is a configuration error."""
    try:
        return ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError([f"DERSYNC_TIMEZONE: unknown time zone {settings.timezone!r} "
                           "(use an IANA name such as Australia/Perth)"]) from None


def local_time(moment: datetime, zone: tzinfo) -> str:
    """`2026-12-03T18:51:45+08:00`: to the second, in `zone`, with the offset, so that times
    from every command compare at a glance and parse back exactly. The store keeps UTC; a naive
    value is UTC too (SQLite hands times back without their zone)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone).isoformat(timespec="seconds")


def in_zone(value: Any, zone: tzinfo) -> Any:
    """`value` with every datetime in it (inside dicts and lists too) as `local_time` text."""
    if isinstance(value, datetime):
        return local_time(value, zone)
    if isinstance(value, dict):
        return {key: in_zone(item, zone) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [in_zone(item, zone) for item in value]
    return value


def write_json(value: Any, zone: tzinfo) -> None:
    sys.stdout.write(json.dumps(in_zone(value, zone), indent=2, default=str) + "\n")


def render(rows: Sequence[dict[str, Any]], fmt: str, *, zone: tzinfo, columns: Sequence[str],
           csv_columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """Rows as a table (`columns`), JSON (every field) or CSV (`csv_columns`, else `columns`),
    times in `zone`.

    The CSV header is the command's, never taken from the rows: a script reading it must find
    the same columns whether nothing, one row or many matched.
    """
    rows = [in_zone(row, zone) for row in rows]
    if fmt == "json":
        write_json(rows, zone)
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(csv_columns or columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        table = Table(title=title, show_lines=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
        console.print(table)


def progress_bar(description: str, enabled: bool) -> tuple[Progress | None, Callable[[int, int], None]]:
    """A progress bar on a terminal; a no-op elsewhere (logs carry progress in containers)."""
    if not enabled:
        return None, lambda done, total: None
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=console, transient=False)
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=max(total, done) or None)

    return bar, update
