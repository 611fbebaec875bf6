"""`dersync compliance` as an operator runs it: a real process over a store filled by real sync
passes against the simulator, one AC connection in each of the five states.

AEMO's times are fixed in the simulator's register; the other connections are commissioned in
2020 (deadline long past) or 2099 (deadline ahead), so each state is the same whatever day the
command runs (it judges against today in DERSYNC_TIMEZONE)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Any

from dersync.compliance import DeadlineRules
from dersync.mock import Simulator
from dersync.settings import Enumerations, Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import commissioned, connection, installation, load, nmi_details, nmi_for
from tests.cli.conftest import DersyncProcess

PINNED = ["nmi", "nspConnectionId", "commissioningDate", "deadline", "acceptedAt", "state", "blockingException"]
FIELDS = [*PINNED, "daysLeft", "acceptedBy", "transactionId"]
HELD, OVERDUE, DUE, UNDATED = nmi_for(1), nmi_for(2), nmi_for(3), nmi_for(4)



async def one_of_each_state(make_settings: Any, store: Store, simulator: Simulator) -> Settings:
    """met and late: held at AEMO before dersync sent them (AEMO's recordCreationDate fixed at
    10 and 24 June 2026 for a 25 May commissioning, deadline 23 June: WA Day is skipped);
    overdue and due: rejected by AEMO (1006), commissioned in 2020 and 2099; not_applicable:
    accepted, without a commissioning date."""
    enumerations = Enumerations()
    enumerations.equipment_types.append("Fuel Cell")  # configured locally, unknown to AEMO
    settings: Settings = make_settings(enumerations=enumerations)
    portal = installation(HELD, connections=[commissioned(connection("A"), "2026-05-25"),
                                             commissioned(connection("B"), "2026-05-25")])
    state = simulator.state
    state.create_nmi(nmi_details(HELD))
    state.create_installation(portal, lambda _inst: ([], set(), set()))
    state.tamper(HELD, "acConnections.0.recordCreationDate", "2026-06-10T02:00:00.000Z")
    state.tamper(HELD, "acConnections.1.recordCreationDate", "2026-06-23T16:30:00.000Z")
    fuel_cell = connection("F", equipment_type="Fuel Cell")
    await load(store, [
        {"nmiDetails": nmi_details(HELD), "installation": portal},
        {"nmiDetails": nmi_details(OVERDUE),
         "installation": installation(OVERDUE, connections=[commissioned(fuel_cell, "2020-01-06")])},
        {"nmiDetails": nmi_details(DUE), "installation": installation(DUE, connections=[
            commissioned(fuel_cell, "2099-01-05")])},
        {"nmiDetails": nmi_details(UNDATED), "installation": installation(UNDATED, connections=[
            commissioned(connection("U"), None)])},
    ])
    await sync_once(settings, store)
    return settings


async def test_one_row_per_connection_with_the_pinned_fields_and_a_summary(
    make_settings: Any, store: Store, simulator: Simulator, dersync: DersyncProcess
) -> None:
    """JSON lists every connection with the pinned fields in order (dates YYYY-MM-DD, the
    acceptance in Perth time with its offset, the blocking exception's code), and a summary with
    every state and every month of commissioning; each of the five states appears."""
    settings = await one_of_each_state(make_settings, store, simulator)

    ran = await dersync("compliance", "--format", "json")

    assert ran.returncode == 0, ran.stderr
    shown = json.loads(ran.stdout)
    rows = {(r["nmi"], r["nspConnectionId"]): r for r in shown["connections"]}
    assert all(list(r)[:len(PINNED)] == PINNED and list(r) == FIELDS for r in shown["connections"])
    assert [rows[(HELD, "A")][f] for f in PINNED] == [
        HELD, "A", "2026-05-25", "2026-06-23", "2026-06-10T10:00:00+08:00", "met", None]
    assert [rows[(HELD, "B")][f] for f in PINNED] == [
        HELD, "B", "2026-05-25", "2026-06-23", "2026-06-24T00:30:00+08:00", "late", None]
    assert rows[(HELD, "A")]["acceptedBy"] == "held_at_aemo" and rows[(HELD, "A")]["transactionId"]
    assert [rows[(OVERDUE, "F")][f] for f in PINNED] == [OVERDUE, "F", "2020-01-06", "2020-02-04", None, "overdue",
                                                         "1006"]
    due_deadline = DeadlineRules.from_settings(settings).deadline(date(2099, 1, 5)).isoformat()
    assert [rows[(DUE, "F")][f] for f in PINNED] == [DUE, "F", "2099-01-05", due_deadline, None, "due", "1006"]
    assert rows[(DUE, "F")]["daysLeft"] > 0
    undated = rows[(UNDATED, "U")]
    assert (undated["commissioningDate"], undated["deadline"], undated["state"]) == (None, None, "not_applicable")
    assert undated["acceptedAt"] is not None and undated["acceptedBy"] == "answered"

    summary = shown["summary"]
    assert summary["byState"] == {"met": 1, "late": 1, "overdue": 1, "due": 1, "not_applicable": 1}
    assert [(m["month"], m["total"]) for m in summary["byMonth"]] == [
        ("2020-01", 1), ("2026-05", 2), ("2099-01", 1), (None, 1)]
    assert summary["byMonth"][1] | {"month": "2026-05"} == {
        "month": "2026-05", "met": 1, "late": 1, "overdue": 0, "due": 0, "not_applicable": 0, "total": 2}
    assert date.fromisoformat(shown["asOf"]) and summary["deadlineBusinessDays"] == 20
    assert all(not line.startswith("{") or "event" in json.loads(line) for line in ran.stderr.splitlines())


async def test_filters_and_the_fixed_csv_header(
    make_settings: Any, store: Store, simulator: Simulator, dersync: DersyncProcess
) -> None:
    """--state and --from/--to (commissioning days, both included) select rows; CSV prints one
    fixed header whether nothing or something matched, and its summary line goes to stderr; a
    table shows the rows and the months; --to before --from is a usage error."""
    await one_of_each_state(make_settings, store, simulator)

    ran = await dersync("compliance", "--state", "overdue", "--format", "csv")
    assert ran.returncode == 0, ran.stderr
    header, *rows = list(csv.reader(io.StringIO(ran.stdout)))
    assert header == FIELDS and [(r[0], r[5], r[6]) for r in rows] == [(OVERDUE, "overdue", "1006")]
    assert "1 AC connection: met 0, late 0, overdue 1, due 0, not_applicable 0" in ran.stderr

    ran = await dersync("compliance", "--state", "met", "--from", "2099-01-01", "--format", "csv")
    assert ran.returncode == 0 and list(csv.reader(io.StringIO(ran.stdout))) == [FIELDS]

    ran = await dersync("compliance", "--from", "2026-05-25", "--to", "2026-05-25", "--format", "json")
    assert sorted(r["nspConnectionId"] for r in json.loads(ran.stdout)["connections"]) == ["A", "B"]

    ran = await dersync("compliance", COLUMNS="200")
    assert ran.returncode == 0, ran.stderr
    assert "2026-06-10T10:00:00+08:00" in ran.stdout and "By month of commissioning" in ran.stdout
    assert "5 AC connections: met 1, late 1, overdue 1, due 1, not_applicable 1" in ran.stdout

    ran = await dersync("compliance", "--from", "2026-06-01", "--to", "2026-05-01")
    assert ran.returncode == 2 and "--to is before --from" in ran.stderr
