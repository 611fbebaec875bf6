"""The one-line summary a pass prints, from a real pass."""

from __future__ import annotations

from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import load, nmi_details, nmi_for


async def test_summary_line_counts_in_the_right_number(settings: Settings, store: Store) -> None:
    """A pass over one record (a lookup and a create: two requests) says "1 record", not
    "1 records", and "2 requests"."""
    await load(store, [{"nmiDetails": nmi_details(nmi_for(0))}])

    line = (await sync_once(settings, store)).line()

    assert line.startswith("1 record: ") and "; 2 requests, " in line, line
