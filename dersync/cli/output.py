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

from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.rule import Rule
from rich.table import Table

T = TypeVar("T")
console = Console()
errors = Console(stderr=True)


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
        _print_table(rows, columns, title)


#: Columns an operator copies (a transactionId for AEMO support, an NMI or code into a query, a
#: kind into --kind), and times (folded, "19:2" / "5:02" misreads): never broken over lines.
#: Free text (detail, fields, diff) wraps instead.
WHOLE_COLUMNS = frozenset({"nmi", "transactionId", "nspConnectionId", "nspDeviceId", "connectionId", "deviceId",
                           "code", "kind", "reconcile_pass_id", "firstSeen", "lastSeen", "resolvedAt", "found_at",
                           "time", "ledgerId", "sentAt", "codes",
                           # dersync compliance
                           "commissioningDate", "deadline", "acceptedAt", "blockingException", "month"})
#: Room a column of free text needs at least (its longest word, up to this) for a table to be
#: worth printing rather than the one-block-per-row layout.
MIN_FREE_TEXT_WIDTH = 12


def _print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None) -> None:
    """One table when its identifier columns fit the terminal whole; otherwise one block per
    row (`name  value` lines, as psql's expanded display), where every value has the width of
    the terminal less the longest name: rich would otherwise cut identifiers to fit."""
    cells = [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    if _table_width(columns, cells) <= console.width:
        table = Table(title=title, show_lines=False)
        for column in columns:
            whole = column in WHOLE_COLUMNS
            table.add_column(column, no_wrap=whole, overflow="ellipsis" if whole else "fold")
        for values in cells:
            table.add_row(*values)
        console.print(table)
        return
    if title:
        console.print(title, markup=False, highlight=False)
    for number, values in enumerate(cells, start=1):
        console.print(Rule(f"{number} of {len(cells)}", align="left"))
        block = Table.grid(padding=(0, 2))
        block.add_column(no_wrap=True, style="bold")
        block.add_column(overflow="fold")
        for column, value in zip(columns, values, strict=True):
            block.add_row(column, value)
        console.print(block)


def _table_width(columns: Sequence[str], cells: Sequence[Sequence[str]]) -> int:
    """The narrowest width at which a rich table (heavy head box: a border between and around
    columns, one space of padding either side) shows the identifier columns whole."""
    width = 3 * len(columns) + 1
    for index, column in enumerate(columns):
        lines = [column] + [line for values in cells for line in values[index].splitlines()]
        if column in WHOLE_COLUMNS:
            width += max(cell_len(line) for line in lines)
        else:
            longest_word = max((cell_len(word) for line in lines for word in line.split()), default=0)
            width += min(longest_word, MIN_FREE_TEXT_WIDTH)
    return width


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
