"""`/metrics` as Prometheus scrapes it: the real admin endpoint, fed from a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from dersync.admin import AdminServer, Metrics
from dersync.aemo.client import AemoClient
from dersync.mock import Simulator
from dersync.reconcile import reconcile
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import http_get, load, nmi_for, record

KINDS = ("missing_at_aemo", "different_at_aemo", "orphan_at_aemo", "conditional_at_aemo")


@pytest.fixture
async def admin(store: Store) -> AsyncIterator[str]:
    """The admin endpoints on a free loopback port, reporting `store`'s status."""

    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {}

    server = AdminServer("127.0.0.1", 0, Metrics(), ready, store.status)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


def drift_gauges(metrics: str) -> dict[str, float]:
    """`dersync_drift_findings{kind="..."} N` lines as {kind: N}."""
    found = {}
    for line in metrics.splitlines():
        if line.startswith('dersync_drift_findings{kind="'):
            labels, value = line.rsplit(" ", 1)
            found[labels.split('"')[1]] = float(value)
    return found


async def test_metrics_report_the_latest_reconciliation_drift_by_kind(
    settings: Settings, store: Store, simulator: Simulator, admin: str
) -> None:
    """`dersync_drift_findings{kind}` shows every kind, 0 before any reconciliation, then the
    latest reconciliation's findings by kind; a later clean reconciliation brings it back to 0."""
    status, metrics = await http_get(admin + "/metrics")
    assert status == 200 and drift_gauges(metrics) == dict.fromkeys(KINDS, 0.0)

    await load(store, [record(nmi_for(i)) for i in range(3)])
    await sync_once(settings, store)
    simulator.state.tamper(nmi_for(1), "approvedCapacity", 42.0)
    simulator.state.tamper(nmi_for(2), "approvedCapacity", 43.0)
    async with AemoClient(settings) as client:
        await reconcile(settings, store, client, repair=False)
    _status, metrics = await http_get(admin + "/metrics")
    assert drift_gauges(metrics) == {**dict.fromkeys(KINDS, 0.0), "different_at_aemo": 2.0}

    simulator.state.tamper(nmi_for(1), "approvedCapacity", 10.0)
    simulator.state.tamper(nmi_for(2), "approvedCapacity", 10.0)
    async with AemoClient(settings) as client:
        await reconcile(settings, store, client, repair=False)
    _status, metrics = await http_get(admin + "/metrics")
    assert drift_gauges(metrics) == dict.fromkeys(KINDS, 0.0)



async def test_metrics_count_parked_records_apart_from_due_ones(store: Store, admin: str) -> None:
    """`dersync_records_parked` counts the records a person parked; they are not in
    `dersync_records_due`, since no pass takes them."""
    await load(store, [record(nmi_for(i)) for i in range(3)])
    await store.park(nmi_for(1), actor="olivia", reason="data fix")
    _status, metrics = await http_get(admin + "/metrics")
    assert "dersync_records_parked 1.0" in metrics.splitlines()
    assert "dersync_records_due 2.0" in metrics.splitlines()
