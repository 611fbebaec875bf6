"""The DER lifecycle: equipment that disappears from the store's record never passes silently.

AEMO's API has no DELETE and its PUT never removes, so equipment the store stops listing stays
active at AEMO. With `removed_equipment = report` (the default) it becomes an open local
exception naming it; with `decommission` the next write marks it decommissioned at AEMO, once.
Each case is checked by reading AEMO's copy back from the simulator.
"""

from __future__ import annotations

import json
from typing import Any

from dersync.aemo.client import AemoClient
from dersync.mock import Simulator
from dersync.reconcile import reconcile
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import api_requests, connection, device, installation, load, nmi_details, nmi_for, read_back

NMI = nmi_for(21)
BATTERY = ("Tesla", "Powerwall 2")


def with_battery(nmi: str = NMI) -> dict[str, Any]:
    devices = [device(f"C-{nmi}-1-D1"), device(f"C-{nmi}-1-D2", kind="Storage", kw=2.0, maker=BATTERY)]
    return {"nmiDetails": nmi_details(nmi), "installation": installation(
        nmi, connections=[connection(f"C-{nmi}-1", devices=devices), connection(f"C-{nmi}-2")])}


def held_device(simulator: Simulator, nsp_device: str) -> dict[str, Any]:
    connections = simulator.state.installations[NMI]["acConnections"]
    [found] = [d for c in connections for d in c["devices"] if d["nspDeviceId"] == nsp_device]
    return found


def writes(simulator: Simulator) -> int:
    """Writes to the NMI and Installation APIs (token requests are POSTs too, and not counted)."""
    routes = ("nmi_create", "nmi_update", "installation_create", "installation_update")
    return sum(simulator.state.count(route=route) for route in routes)


async def battery_removed_in_store(settings: Settings, store: Store, simulator: Simulator) -> int:
    """Sync the record with its battery, then sync it again with the battery gone from the
    store's record: AEMO's deviceId of the battery."""
    await load(store, [with_battery()])
    await sync_once(settings, store)
    battery_id = int(held_device(simulator, f"C-{NMI}-1-D2")["deviceId"])
    await load(store, [{"installation": installation(NMI, connections=[connection(f"C-{NMI}-1"),
                                                                       connection(f"C-{NMI}-2")])}])
    await sync_once(settings, store)
    return battery_id


async def last_installation_put(store: Store) -> dict[str, Any]:
    put = next(r for r in await store.ledger_for_nmi(NMI) if r["method"] == "PUT" and r["part"] == "installation")
    entry = await store.ledger_body(put["id"])
    assert entry is not None and entry[1] is not None
    return dict(json.loads(entry[1])["data"])


async def test_a_removed_device_is_reported_and_nothing_is_sent_for_it(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """By default, a device the store stops listing is an open local exception REMOVED_IN_STORE
    naming it and AEMO's deviceId; it stays active at AEMO, untouched; restored in the store, it
    is updated in place (no duplicate) and the exception resolves."""
    battery_id = await battery_removed_in_store(settings, store, simulator)

    assert held_device(simulator, f"C-{NMI}-1-D2")["status"] == "Active"
    sent = await last_installation_put(store)
    assert all(d["nspDeviceId"] != f"C-{NMI}-1-D2" for c in sent["acConnections"] for d in c["devices"])
    [removed] = await store.list_exceptions(open_only=True, nmi=NMI)
    assert (removed["level"], removed["code"], removed["nspDeviceId"], removed["deviceId"]) == (
        "local", "REMOVED_IN_STORE", f"C-{NMI}-1-D2", battery_id)
    assert "DERSYNC_REMOVED_EQUIPMENT=report" in removed["detail"]

    await load(store, [with_battery()])
    await sync_once(settings, store)
    assert await store.list_exceptions(open_only=True, nmi=NMI) == []
    report = await read_back(store, simulator.state)
    assert report.ok, report


async def test_decommission_marks_a_removed_device_at_aemo_once(
    make_settings: Any, store: Store, simulator: Simulator
) -> None:
    """With `decommission`, the next write carries the removed device with AEMO's deviceId and the
    decommissioned status (the ledger shows the body), AEMO holds it decommissioned, no
    exception is open, and later writes do not send it again."""
    settings = make_settings(removed_equipment="decommission")
    battery_id = await battery_removed_in_store(settings, store, simulator)

    battery = held_device(simulator, f"C-{NMI}-1-D2")
    assert battery["status"] == "Decommissioned" and battery["deviceId"] == battery_id
    sent = await last_installation_put(store)
    [sent_battery] = [d for c in sent["acConnections"] for d in c["devices"] if d["nspDeviceId"] == f"C-{NMI}-1-D2"]
    assert sent_battery["deviceId"] == battery_id and sent_battery["status"] == "Decommissioned"
    assert await store.list_exceptions(open_only=True, nmi=NMI) == []
    assert simulator.state.duplicate_equipment() == []

    before = api_requests(simulator.state)
    await sync_once(settings, store)
    assert api_requests(simulator.state) == before  # nothing changed: nothing sent
    await load(store, [{"installation": installation(NMI, approvedCapacity=11.0, connections=[
        connection(f"C-{NMI}-1"), connection(f"C-{NMI}-2")])}])
    await sync_once(settings, store)
    again = await last_installation_put(store)
    assert all(d["nspDeviceId"] != f"C-{NMI}-1-D2" for c in again["acConnections"] for d in c["devices"])


async def test_decommission_marks_a_removed_connection_and_its_devices(
    make_settings: Any, store: Store, simulator: Simulator
) -> None:
    """A whole AC connection the store stops listing is sent once with the decommissioned status,
    and its devices with it; AEMO's copy shows all of them decommissioned, nothing duplicated."""
    settings = make_settings(removed_equipment="decommission")
    await load(store, [with_battery()])
    await sync_once(settings, store)
    await load(store, [{"installation": installation(NMI, connections=[connection(f"C-{NMI}-2")])}])
    await sync_once(settings, store)

    [gone] = [c for c in simulator.state.installations[NMI]["acConnections"] if c["nspConnectionId"] == f"C-{NMI}-1"]
    assert gone["status"] == "Decommissioned"
    assert {d["status"] for d in gone["devices"]} == {"Decommissioned"}
    assert simulator.state.duplicate_equipment() == []


async def test_reconciliation_names_removed_equipment_and_records_deleted_from_the_store(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """Reconciliation's orphan findings say which lifecycle case applies: equipment removed in the
    store (and what the setting does about it), and an NMI whose record was deleted from
    der_record (reported only: nothing is sent for it, then or later)."""
    other = nmi_for(22)
    await load(store, [with_battery(), with_battery(other)])
    await sync_once(settings, store)
    await load(store, [{"installation": installation(NMI, connections=[connection(f"C-{NMI}-1"),
                                                                       connection(f"C-{NMI}-2")])}])
    async with store.transaction() as conn:  # an operator's ETL deletes the row
        from sqlalchemy import delete

        from dersync.store.tables import der_record
        await conn.execute(delete(der_record).where(der_record.c.nmi == other))
    await sync_once(settings, store)

    writes_before = writes(simulator)
    async with AemoClient(settings) as client:
        report = await reconcile(settings, store, client, repair=True)
    orphans = {f.nmi: f.detail for f in report.findings if f.kind == "orphan_at_aemo"}
    assert orphans[NMI].startswith("removed in the store") and "report" in orphans[NMI]
    assert orphans[other].startswith("deleted from the store") and "never acted on automatically" in orphans[other]
    assert report.marked_due == 0
    await sync_once(settings, store)
    assert writes(simulator) == writes_before  # nothing sent for either, then or after
