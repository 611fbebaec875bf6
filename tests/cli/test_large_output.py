"""Long lists: past `RICH_TABLE_MAX_ROWS` rows, `exceptions list` writes plain aligned columns a
line a row (rich took minutes for 100,000 exceptions), still every row and every identifier
whole; JSON written a row at a time is the same text `json.dumps(rows, indent=2)` would be."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from dersync.cli.output import RICH_TABLE_MAX_ROWS, render, write_json_rows
from dersync.mock import Simulator
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import installation, load, nmi_details, nmi_for
from tests.cli.conftest import DersyncProcess

PERTH = timezone(timedelta(hours=8))
MANY = RICH_TABLE_MAX_ROWS + 50


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_long_exceptions_list_shows_every_row_whole_on_its_own_line(
    settings: Settings, store: Store, simulator: Simulator, dersync: DersyncProcess
) -> None:
    """More exceptions than a rich table is drawn for, at 80 columns: one line per exception with
    its NMI, code and field whole (lines as wide as they need), then the same rows as JSON."""
    invalid = [nmi_for(i) for i in range(MANY)]
    await load(store, [{"nmiDetails": nmi_details(nmi), "installation": installation(nmi, approvedCapacity="x")}
                       for nmi in invalid])
    await sync_once(settings, store)
    exceptions = await store.list_exceptions()
    assert len(exceptions) >= MANY

    shown = await dersync("exceptions", "list", COLUMNS="80")

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"Validation exceptions ({len(exceptions):,})"
    assert lines[1].split()[:4] == ["nmi", "part", "level", "code"]
    rows = lines[3:]
    assert len(rows) == len(exceptions)
    for line, exception in zip(rows, exceptions, strict=True):
        assert line.split()[:4] == [exception["nmi"], exception["part"], exception["level"], exception["code"]]
        assert exception["field"] is None or exception["field"] in line
    listed = json.loads((await dersync("exceptions", "list", "--format", "json")).stdout)
    assert [(e["nmi"], e["code"]) for e in listed] == [(e["nmi"], e["code"]) for e in exceptions]


def plain_rows(count: int) -> list[dict[str, Any]]:
    return [{"nmi": nmi_for(i), "code": "E-1", "detail": "two\nlines" if i % 2 else "Größe: ünits", "count": i,
             "ratio": i / 3, "flag": i % 3 == 0, "none": None, "at": datetime(2026, 12, 3, 4, 5, 6, tzinfo=UTC),
             "empty": [], "nothing": {}} for i in range(count)]


@pytest.mark.parametrize("rows", [
    [],
    plain_rows(3),
    [{"nmi": nmi_for(0), "diff": {"approvedCapacity": [10.0, 11.0], "at": datetime(2026, 1, 1, tzinfo=UTC)},
      "problems": ["a", {"b": None}]}],
    [{}, {1: "not a text key"}],
], ids=["none", "flat", "nested", "odd"])
def test_rows_written_as_json_a_row_at_a_time_are_what_json_dumps_writes(
    rows: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    from dersync.cli.output import in_zone

    write_json_rows(rows, PERTH)

    assert capsys.readouterr().out == json.dumps(in_zone(rows, PERTH), indent=2, default=str) + "\n"


def test_a_long_table_aligns_columns_and_joins_line_breaks(capsys: pytest.CaptureFixture[str]) -> None:
    """Each column starts at the same place on every line; free text with a line break stays on
    its row's line."""
    rows = plain_rows(MANY)

    render(rows, "table", zone=PERTH, columns=("nmi", "code", "detail", "at"), title="Rows")

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Rows ({MANY})" and len(lines) == 3 + MANY
    starts = {(line.index("E-1"), line.index("2026-12-03T12:05:06+08:00")) for line in lines[3:]}
    assert len(starts) == 1
    assert lines[4].split("  ")[0] == nmi_for(1) and "two lines" in lines[4]
