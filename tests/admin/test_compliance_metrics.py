"""The compliance gauges on `/metrics`: every state shown once computed, the connections due soon,
and when they were computed. Judged at a fixed moment (`now` is passed in), from a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from dersync.admin import AdminServer, Metrics
from dersync.settings import Settings
from dersync.store import Accepted, PartOutcome, RecordOutcome, Store
from dersync.testing import connection, http_get, installation, load, nmi_for
from dersync.vocabulary import AcceptanceRule, Level, Part, Result

#: Thursday 18 June 2026, noon in Perth.
NOW = datetime(2026, 6, 18, 4, 0, tzinfo=UTC)


@pytest.fixture
async def served(store: Store) -> AsyncIterator[tuple[Metrics, str]]:
    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {}

    metrics = Metrics()
    server = AdminServer("127.0.0.1", 0, metrics, ready, store.status)
    await server.start()
    try:
        yield metrics, f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


def gauges(text: str, name: str) -> dict[str, float]:
    """`name{state="..."} N` (or `name N`) lines as {state or "": N}."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, value = line.rsplit(" ", 1)
            found[labels.split('"')[1] if "{" in labels else ""] = float(value)
    return found


def dated(nmi: str, day: str | None) -> dict[str, Any]:
    item = connection(f"C-{nmi}")
    if day is None:
        item.pop("commissioningDate")
    else:
        item["commissioningDate"] = day
    return {"installation": installation(nmi, connections=[item])}


async def test_compliance_gauges_show_every_state_and_the_connections_due_soon(
    settings: Settings, store: Store, served: tuple[Metrics, str]
) -> None:
    """Before the first refresh the compliance gauges are absent (no false zeros); after one,
    `dersync_compliance_connections{state}` has every state (0 for late here) and
    `dersync_compliance_due_soon` counts the due connection 3 business days from its deadline
    (23 June, WA Day skipped) but not the one due in July."""
    metrics, url = served
    await load(store, [dated(nmi_for(1), "2026-05-25"), dated(nmi_for(2), "2026-06-15"),
                       dated(nmi_for(3), "2026-05-01"), dated(nmi_for(4), None), dated(nmi_for(5), "2026-06-01")])
    accepted = PartOutcome(Part.INSTALLATION, Result.SYNCED, "h", frozenset(Level), transaction_id="tx",
                           accepted=[Accepted(f"C-{nmi_for(5)}", AcceptanceRule.ANSWERED)],
                           answered_at=datetime(2026, 6, 3, 2, tzinfo=UTC))
    await store.record_outcomes([RecordOutcome(nmi_for(5), 1, (accepted,))])

    _, before = await http_get(url + "/metrics")
    assert gauges(before, "dersync_compliance_connections") == {}

    counts = await metrics.refresh_compliance(store, settings, now=NOW)

    _, after = await http_get(url + "/metrics")
    assert gauges(after, "dersync_compliance_connections") == {
        "met": 1.0, "late": 0.0, "overdue": 1.0, "due": 2.0, "not_applicable": 1.0}
    assert gauges(after, "dersync_compliance_due_soon") == {"": 1.0}
    assert gauges(after, "dersync_compliance_refreshed_timestamp_seconds") == {"": NOW.timestamp()}
    assert counts.today.isoformat() == "2026-06-18"

    narrow = settings.model_copy(update={"deadline_warning_days": 2})
    await metrics.refresh_compliance(store, narrow, now=NOW)
    _, narrower = await http_get(url + "/metrics")
    assert gauges(narrower, "dersync_compliance_due_soon") == {"": 0.0}
