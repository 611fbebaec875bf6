"""`Store.status()`: the counts `dersync status` prints and `/metrics` exports."""

from __future__ import annotations

from dersync.aemo.client import AemoClient
from dersync.mock import Simulator
from dersync.reconcile import reconcile
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import load, nmi_for, record
from dersync.vocabulary import DriftKind, values


async def test_status_counts_the_latest_reconciliation_findings_by_kind(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """`Store.status()["drift"]` names every kind (0 when none) with the latest finished
    reconciliation's counts, the numbers `dersync status` and `/metrics` show."""
    assert (await store.status())["drift"] == dict.fromkeys(values(DriftKind), 0)
    await load(store, [record(nmi_for(0))])
    await sync_once(settings, store)
    simulator.state.tamper(nmi_for(0), "approvedCapacity", 42.0)
    async with AemoClient(settings) as client:
        await reconcile(settings, store, client, repair=False)
    assert (await store.status())["drift"] == {**dict.fromkeys(values(DriftKind), 0), "different_at_aemo": 1}
