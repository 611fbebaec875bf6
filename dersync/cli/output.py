"""Rendering rows for people (rich tables) and for programs (JSON, CSV).

Every time a command prints goes through `local_time`: in the operator's zone (setting
`timezone`) with its offset, the same in tables, JSON and CSV.

Many rows (100,000 exceptions) are written as they are formatted, in time linear in the rows:
rich lays out a table at ~2-4 ms a row, which made such a list take minutes.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from json.encoder import encode_basestring_ascii
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
    if type(value) in PLAIN_SCALARS:  # most values: skip the isinstance chain (100,000s of rows)
        return value
    if isinstance(value, datetime):
        return local_time(value, zone)
    if isinstance(value, dict):
        return {key: in_zone(item, zone) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [in_zone(item, zone) for item in value]
    return value


#: Types `in_zone` returns as they are.
PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})


def write_json(value: Any, zone: tzinfo) -> None:
    sys.stdout.write(json.dumps(in_zone(value, zone), indent=2, default=str) + "\n")


def write_json_rows(rows: Sequence[dict[str, Any]], zone: tzinfo) -> None:
    """The same text as `write_json(rows)`, written a row at a time: a list of 100,000 rows is
    neither held twice in memory nor encoded by `json`'s pure-Python indenting encoder."""
    if not rows:
        sys.stdout.write("[]\n")
        return
    write = sys.stdout.write
    write("[\n")
    last = len(rows) - 1
    for index, row in enumerate(rows):
        write(_json_element(in_zone(row, zone)))
        write(",\n" if index < last else "\n")
    write("]\n")


#: Values a flat row holds, encoded as `json.dumps` does without `json`'s indenting encoder.
_SCALAR_JSON: dict[type, Callable[[Any], str]] = {
    str: encode_basestring_ascii, int: int.__repr__, type(None): lambda _: "null",
    bool: lambda value: "true" if value else "false",
}
_ENCODER = json.JSONEncoder(default=str)


def _json_element(value: Any) -> str:
    """`value` as an element of a top-level list `json.dumps(..., indent=2)` writes. A flat
    dict with text keys (every row a command lists) is encoded value by value with the C
    encoder; anything nested goes through `json.dumps` itself, re-indented."""
    if isinstance(value, dict) and value and all(
            type(key) is str and not (isinstance(item, dict | list | tuple) and item) for key, item in value.items()):
        items = ",\n".join(f"    {encode_basestring_ascii(key)}: {_scalar_json(item)}" for key, item in value.items())
        return "  {\n" + items + "\n  }"
    return "  " + json.dumps(value, indent=2, default=str).replace("\n", "\n  ")


def _scalar_json(value: Any) -> str:
    encode = _SCALAR_JSON.get(type(value))
    return encode(value) if encode is not None else _ENCODER.encode(value)


def render(rows: Sequence[dict[str, Any]], fmt: str, *, zone: tzinfo, columns: Sequence[str],
           csv_columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """Rows as a table (`columns`), JSON (every field) or CSV (`csv_columns`, else `columns`),
    times in `zone`.

    The CSV header is the command's, never taken from the rows: a script reading it must find
    the same columns whether nothing, one row or many matched.
    """
    if fmt == "json":
        write_json_rows(rows, zone)
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(csv_columns or columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(in_zone(row, zone))
    elif len(rows) > RICH_TABLE_MAX_ROWS:
        _write_columns(rows, columns, title, zone)
    else:
        _print_table([in_zone(row, zone) for row in rows], columns, title)


#: Columns an operator copies (a transactionId for AEMO support, an NMI or code into a query, a
#: kind into --kind), and times (folded, "19:2" / "5:02" misreads): never broken over lines.
#: Free text (detail, fields, diff) wraps instead.
WHOLE_COLUMNS = frozenset({"nmi", "transactionId", "nspConnectionId", "nspDeviceId", "connectionId", "deviceId",
                           "code", "kind", "reconcile_pass_id", "firstSeen", "lastSeen", "resolvedAt", "found_at",
                           "time", "ledgerId", "sentAt", "codes",
                           # dersync compliance
                           "commissioningDate", "deadline", "acceptedAt", "blockingException", "month"})
#: More rows than this are written as plain aligned columns, a line a row (`_write_columns`):
#: rich takes ~0.5 s for this many, and minutes for 100,000.
RICH_TABLE_MAX_ROWS = 200
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


def _write_columns(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None,
                   zone: tzinfo) -> None:
    """Many rows: `columns` padded to their widest value, two spaces apart, a line a row (as
    `ps` or `kubectl get`), so that `grep` finds a row whole and nothing is ever cut; a line is as
    wide as its values need, whatever the terminal. Free text's line breaks become spaces."""
    cells = [[_one_line(row.get(column), zone) for column in columns] for row in rows]
    widths = [max([_width(column)] + [_width(values[index]) for values in cells])
              for index, column in enumerate(columns)]
    write = sys.stdout.write
    if title:
        write(f"{title} ({len(rows):,})\n")
    write(_line(columns, widths))
    write(_line(["-" * width for width in widths], widths))
    for values in cells:
        write(_line(values, widths))


def _one_line(value: Any, zone: tzinfo) -> str:
    if value is None:
        return ""
    text = str(in_zone(value, zone))
    return " ".join(text.splitlines()) if "\n" in text or "\r" in text else text


def _line(values: Sequence[str], widths: Sequence[int]) -> str:
    padded = (value + " " * (width - _width(value)) for value, width in zip(values, widths, strict=True))
    return "  ".join(padded).rstrip() + "\n"


def _width(text: str) -> int:
    """Cells `text` takes on a terminal; ASCII (nearly every value) without rich's lookup."""
    return len(text) if text.isascii() else cell_len(text)


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
