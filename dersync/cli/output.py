"""Rendering rows for people (rich tables) and for programs (JSON, CSV)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

T = TypeVar("T")
console = Console()
errors = Console(stderr=True)


def render(rows: Sequence[dict[str, Any]], fmt: str, *, columns: Sequence[str],
           csv_columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """Rows as a table (`columns`), JSON (every field) or CSV (`csv_columns`, else `columns`).

    The CSV header is the command's, never taken from the rows: a script reading it must find
    the same columns whether nothing, one row or many matched.
    """
    if fmt == "json":
        sys.stdout.write(json.dumps(list(rows), indent=2, default=str) + "\n")
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
