"""Reconciliation end to end: the real store (SQLite and PostgreSQL), the real client, the AEMO
simulator over loopback HTTP. Drift is made behind the service's back with `sim.state`."""

from __future__ import annotations

from typing import Any

from dersync.mock import Simulator
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import connection, device, installation, load, nmi_details, nmi_for, read_back, record
from tests.reconcile.conftest import run_reconcile, writes


def conditional_now(inst: dict[str, Any]) -> tuple[list[dict[str, Any]], set[int], set[int]]:
    """An assessor for `sim.state.create_installation` that flags every connection Conditional."""
    return [], {c["connectionId"] for c in inst["acConnections"]}, set()


def confirmed(inst: dict[str, Any]) -> tuple[list[dict[str, Any]], set[int], set[int]]:
    return [], set(), set()


async def synced(settings: Settings, store: Store, items: list[dict[str, Any]]) -> None:
    await load(store, items)
    await sync_once(settings, store)
    assert (await store.status())["due"] == 0


async def test_store_in_step_with_aemo_has_no_findings(settings: Settings, store: Store, simulator: Simulator) -> None:
    """After a sync, reconciliation finds nothing, writes nothing, and records the pass (kind
    "reconcile", status ok) with its counts; records invalid locally are skipped, not "missing"."""
    bad = installation(nmi_for(9), acConnections=[])  # at least one connection is mandatory
    await load(store, [record(nmi_for(i)) for i in range(5)] + [{"nmiDetails": nmi_details(nmi_for(9)),
                                                                  "installation": bad}])
    await sync_once(settings, store)
    simulator.state.reset_counters()

    report = await run_reconcile(settings, store)

    assert report.findings == [] and report.status == "ok"
    assert report.compared == 6 and report.skipped_invalid == 1 and report.marked_due == 0
    assert writes(simulator.state) == 0
    last = (await store.status())["last_reconcile"]
    assert last["status"] == "ok" and last["summary"]["compared"] == 6
    assert last["summary"]["missing_at_aemo"] == 0
    assert await store.latest_drift() == (await store.latest_drift())  # readable, stable
    assert (await store.latest_drift())[1] == []


async def test_missing_installation_is_found_and_repaired(settings: Settings, store: Store,
                                                          simulator: Simulator) -> None:
    """An installation deleted at AEMO is `missing_at_aemo`; repair makes the record due and the
    next sync pass creates it again, after which AEMO matches the store and nothing is found."""
    await synced(settings, store, [record(nmi_for(i)) for i in range(3)])
    gone = nmi_for(1)
    simulator.state.delete_installation(gone)
    simulator.state.reset_counters()  # the first create is history now

    report = await run_reconcile(settings, store, repair=True)

    assert [(f.nmi, f.kind, f.part) for f in report.findings] == [(gone, "missing_at_aemo", "installation")]
    assert report.marked_due == 1 and (await store.status())["due"] == 1
    _, rows = await store.latest_drift()
    assert [(r["nmi"], r["kind"], r["part"], r["reconcile_pass_id"]) for r in rows] == [
        (gone, "missing_at_aemo", "installation", report.pass_id)]

    await sync_once(settings, store)

    assert gone in simulator.state.installations and simulator.state.creates[gone] == 1
    back = await read_back(store, simulator.state)
    assert back.checked == 3 and back.ok, back
    assert (await run_reconcile(settings, store)).findings == []


async def test_missing_nmi_record_and_installation_are_both_repaired(settings: Settings, store: Store,
                                                                     simulator: Simulator) -> None:
    """When AEMO holds neither the NMI record nor the installation, both parts are reported missing
    (the NMI record is read only because no installation came back) and both are recreated."""
    nmi = nmi_for(4)
    await synced(settings, store, [record(nmi)])
    simulator.state.delete_installation(nmi)
    simulator.state.delete_nmi(nmi)
    simulator.state.reset_counters()

    report = await run_reconcile(settings, store, repair=True)

    assert sorted((f.kind, f.part) for f in report.findings) == [
        ("missing_at_aemo", "installation"), ("missing_at_aemo", "nmi")]
    await sync_once(settings, store)
    assert nmi in simulator.state.nmis and nmi in simulator.state.installations
    assert (await read_back(store, simulator.state)).ok


async def test_field_changed_at_aemo_is_different_and_repaired(settings: Settings, store: Store,
                                                               simulator: Simulator) -> None:
    """A field changed behind the service's back is `different_at_aemo` with its path in AEMO's
    spelling and both values; repair re-pushes the store's version over it."""
    nmi = nmi_for(2)
    await synced(settings, store, [record(nmi_for(i)) for i in range(3)])
    simulator.state.tamper(nmi, "acConnections.0.devices.0.details.nominalRatedCapacity", 99.0)
    simulator.state.tamper(nmi, "exportLimitkW", None)  # a value the store sends, gone at AEMO
    assert (await read_back(store, simulator.state)).different == [(nmi, "installation")]

    report = await run_reconcile(settings, store, repair=True)

    [finding] = report.findings
    assert (finding.nmi, finding.kind, finding.part, finding.repairable) == (nmi, "different_at_aemo",
                                                                             "installation", True)
    device_path = (f"acConnections[nspConnectionId=C-{nmi}-1].devices[nspDeviceId=C-{nmi}-1-D1]"
                   ".details.nominalRatedCapacity")
    assert finding.fields == [
        {"path": "exportLimitkW", "store": 5.0, "aemo": None},
        {"path": device_path, "store": 5.0, "aemo": 99.0},
    ]

    await sync_once(settings, store)

    assert (await read_back(store, simulator.state)).ok
    assert simulator.state.installations[nmi]["acConnections"][0]["devices"][0]["details"][
        "nominalRatedCapacity"] == 5.0
    assert simulator.state.creates[nmi] == 1 and simulator.state.duplicate_equipment() == []
    assert (await run_reconcile(settings, store)).findings == []


async def test_nmi_details_are_compared_only_when_worth_a_request(settings: Settings, store: Store,
                                                                  simulator: Simulator) -> None:
    """By default NMI details are implied present when AEMO returns the installation and are not
    read (no GET /nmi-details); `nmi_details=True` reads and compares them, and repair fixes them."""
    nmi = nmi_for(3)
    await synced(settings, store, [record(nmi)])
    simulator.state.tamper(nmi, "tni", "WXYZ", target="nmi")
    simulator.state.reset_counters()

    frugal = await run_reconcile(settings, store)
    assert frugal.findings == [] and simulator.state.count(route="nmi_get") == 0

    deep = await run_reconcile(settings, store, nmi_details=True)
    assert [(f.kind, f.part, f.fields) for f in deep.findings] == [
        ("different_at_aemo", "nmi", [{"path": "tni", "store": "WCNG", "aemo": "WXYZ"}])]
    assert simulator.state.count(route="nmi_get") == 1

    await sync_once(settings, store)
    assert simulator.state.nmis[nmi]["tni"] == "WCNG"


async def test_equipment_only_aemo_holds_is_reported_not_repaired(settings: Settings, store: Store,
                                                                  simulator: Simulator) -> None:
    """A device the store no longer lists stays at AEMO (AEMO's PUT updates or adds, never removes):
    reconciliation names it as equipment removed in the store (an orphan at AEMO, with what the
    removed_equipment setting does: by default report it), and repair does not mark the record
    due, since a push cannot remove it; the pass reported it as an open REMOVED_IN_STORE exception."""
    nmi = nmi_for(5)
    two = [device(f"C-{nmi}-1-D1"), device(f"C-{nmi}-1-D2", kind="Storage", kw=2.0, maker=("Tesla", "Powerwall 2"))]
    await synced(settings, store, [{"nmiDetails": nmi_details(nmi),
                                     "installation": installation(
                                         nmi, connections=[connection(f"C-{nmi}-1", devices=two)])}])
    await synced(settings, store, [{"installation": installation(nmi)}])  # D2 dropped in the store

    report = await run_reconcile(settings, store, repair=True)

    [finding] = report.findings
    assert finding.kind == "orphan_at_aemo" and not finding.repairable
    assert [d["path"] for d in finding.fields] == [
        f"acConnections[nspConnectionId=C-{nmi}-1].devices[nspDeviceId=C-{nmi}-1-D2]"]
    assert finding.fields[0]["store"] is None and finding.fields[0]["aemo"]["type"] == "Storage"
    assert finding.detail.startswith("removed in the store") and "DERSYNC_REMOVED_EQUIPMENT=report" in finding.detail
    assert report.marked_due == 0 and (await store.status())["due"] == 0
    [removed] = await store.list_exceptions(open_only=True, nmi=nmi)
    assert (removed["code"], removed["nspDeviceId"]) == ("REMOVED_IN_STORE", f"C-{nmi}-1-D2")


async def test_orphans_are_found_among_queried_nmis_and_by_sweep(settings: Settings, store: Store,
                                                                 simulator: Simulator) -> None:
    """An installation AEMO holds for an NMI the store has only NMI details for is an orphan; one for
    an NMI the store does not know at all is found only by a filter sweep (AEMO's API needs a
    filter). Orphans are reported, never repaired or changed."""
    known, stranger = nmi_for(7), nmi_for(800)
    await synced(settings, store, [record(nmi_for(1)), {"nmiDetails": nmi_details(known)}])
    state = simulator.state
    state.create_installation(installation(known), confirmed)
    state.create_nmi(nmi_details(stranger))
    state.create_installation(installation(stranger), conditional_now)
    before = {n: dict(i) for n, i in state.installations.items()}
    state.reset_counters()

    plain = await run_reconcile(settings, store, repair=True)
    assert [(f.nmi, f.kind) for f in plain.findings] == [(known, "orphan_at_aemo")]
    assert plain.findings[0].fields[0]["path"] == f"acConnections[nspConnectionId=C-{known}-1]"

    swept = await run_reconcile(settings, store, repair=True, sweep=[{"installationStage": "Conditional"},
                                                                     {"installationStage": "Confirmed"}])
    assert sorted((f.nmi, f.kind) for f in swept.findings) == [(known, "orphan_at_aemo"), (stranger, "orphan_at_aemo")]
    assert "installationStage=Conditional" in next(f for f in swept.findings if f.nmi == stranger).detail
    assert swept.swept == 3 and swept.marked_due == 0
    assert (await store.status())["due"] == 0
    assert writes(state) == 0 and state.installations == before


async def test_conditional_equipment_is_reported(settings: Settings, store: Store, simulator: Simulator) -> None:
    """Unapproved equipment accepted as Conditional is `conditional_at_aemo`, naming the connection;
    it is not a difference and not repaired (pushing the same data would not change it)."""
    nmi = nmi_for(6)
    flagged = installation(nmi, connections=[connection(f"C-{nmi}-1", maker=("Acme Solar", "X-1000"))])
    await synced(settings, store, [record(nmi_for(1)), {"nmiDetails": nmi_details(nmi), "installation": flagged}])

    report = await run_reconcile(settings, store, repair=True)

    [finding] = report.findings
    assert (finding.nmi, finding.kind, finding.part) == (nmi, "conditional_at_aemo", "installation")
    assert finding.fields == [{"path": f"acConnections[nspConnectionId=C-{nmi}-1].installationStage",
                               "store": None, "aemo": "Conditional"}]
    assert report.marked_due == 0 and report.counts["conditional_at_aemo"] == 1


async def test_without_repair_findings_are_only_reported(settings: Settings, store: Store,
                                                         simulator: Simulator) -> None:
    """With repair off, findings are recorded but no record is made due and AEMO is left as it is."""
    nmi = nmi_for(2)
    await synced(settings, store, [record(nmi)])
    simulator.state.delete_installation(nmi)

    report = await run_reconcile(settings, store, repair=False)

    assert [f.kind for f in report.findings] == ["missing_at_aemo"] and report.marked_due == 0
    assert (await store.status())["due"] == 0


async def test_requests_scale_with_installations_over_100(make_settings: Any, store: Store,
                                                          simulator: Simulator) -> None:
    """For 250 installations reconciliation sends 3 batched GETs (100 NMIs each) and no per-NMI
    request, even when the store is read in batches that are not multiples of 100."""
    settings = make_settings(store_batch_size=64)
    await load(store, [record(nmi_for(i)) for i in range(250)])
    await sync_once(settings, store)
    simulator.state.reset_counters()

    report = await run_reconcile(settings, store)

    assert report.compared == 250 and report.findings == []
    assert simulator.state.count(route="installation_list") == 3
    assert simulator.state.count(route="nmi_get") == 0 and simulator.state.count(route="installation_get") == 0
    assert writes(simulator.state) == 0
