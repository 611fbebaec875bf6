"""`sync --dry-run`: the plan per due record with a field diff against AEMO, and no writes."""

from __future__ import annotations

from typing import Any

from dersync.aemo.client import AemoClient
from dersync.mock import Simulator
from dersync.reconcile import plan_dry_run
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import installation, load, nmi_details, nmi_for, record
from tests.reconcile.conftest import writes


async def test_dry_run_plans_each_due_record_and_writes_nothing(settings: Settings, store: Store,
                                                                 simulator: Simulator, client: AemoClient) -> None:
    """Each due record gets create / update / unchanged / invalid with the field differences against
    AEMO's copy; only GETs reach AEMO, and the store's sync state is untouched."""
    changed, forgotten, new, invalid, quiet = (nmi_for(i) for i in range(5))
    await load(store, [record(changed), record(forgotten), record(quiet)])
    await sync_once(settings, store)
    await load(store, [{"installation": installation(changed, approvedCapacity=12.5)}, record(new),
                       {"nmiDetails": nmi_details(invalid, postCode="WA6000")}])
    await store.mark_due([forgotten], forget_synced=True)
    status_before = await store.status()
    simulator.state.reset_counters()

    rows = {row["nmi"]: row for row in await plan_dry_run(settings, store, client)}

    assert sorted(rows) == [changed, forgotten, new, invalid]
    assert rows[changed]["action"] == "update" and rows[changed]["installation"] == "update"
    assert rows[changed]["nmi_details"] == "unchanged" and rows[changed]["requests"] == ["PUT installation"]
    assert rows[changed]["diff"] == [{"part": "installation", "path": "approvedCapacity", "store": 12.5, "aemo": 10.0}]
    assert rows[forgotten]["action"] == "unchanged" and rows[forgotten]["diff"] == []
    assert rows[forgotten]["requests"] == ["PUT nmi-details", "PUT installation"]
    assert rows[new]["action"] == "create"
    assert rows[new]["requests"] == ["POST nmi-details", "POST installation"]
    assert rows[invalid]["action"] == "invalid" and rows[invalid]["requests"] == []
    assert any("postCode" in problem for problem in rows[invalid]["problems"])

    assert writes(simulator.state) == 0
    assert simulator.state.count(method="PUT") == 0
    assert simulator.state.count(method="POST") == simulator.state.count(route="oauth_token")
    assert await store.status() == status_before
    assert changed not in [n for n, i in simulator.state.installations.items() if i.get("approvedCapacity") == 12.5]


async def test_dry_run_reads_aemo_in_batches(make_settings: Any, store: Store, simulator: Simulator) -> None:
    """For 250 due installations the dry run reads AEMO with batched GETs (100 NMIs each), plus one
    NMI read per NMI record it would send."""
    settings = make_settings()
    await load(store, [{"installation": installation(nmi_for(i))} for i in range(250)])
    simulator.state.reset_counters()

    async with AemoClient(settings) as client:
        rows = await plan_dry_run(settings, store, client)

    assert len(rows) == 250 and {r["action"] for r in rows} == {"create"}
    assert simulator.state.count(route="installation_list") == 3
    assert simulator.state.count(route="nmi_get") == 0 and writes(simulator.state) == 0
