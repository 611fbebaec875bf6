"""The pure comparison of the store's payload with AEMO's copy (no network, no database)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dersync.reconcile.compare import (
    compare_installation,
    compare_nmi_details,
    conditional_equipment,
    repairable,
    values_equal,
)


def store_installation() -> dict[str, Any]:
    return {
        "nmi": "8001000001",
        "approvedCapacity": 10.0,
        "exportLimitkW": 5,
        "acConnections": [
            {
                "nspConnectionId": "C1",
                "equipmentType": "Solar PV Inverter",
                "count": 1,
                "status": "Active",
                "commissioningDate": "2024-03-01",
                "details": {"manufacturerName": "Fronius", "serialNumbers": ["SN-1"]},
                "devices": [
                    {"nspDeviceId": "D1", "type": "Solar PV", "count": 1, "status": "Active",
                     "details": {"nominalRatedCapacity": 5.0}},
                ],
            }
        ],
    }


def aemo_copy() -> dict[str, Any]:
    """AEMO's copy of `store_installation()`: server-owned fields, AEMO ids and nulls added."""
    held = copy.deepcopy(store_installation())
    held.update(recordCreationDate="2026-01-01T00:00:00Z", recordUpdateDate="2026-01-02T00:00:00Z",
                jobNumber=None, exportLimitkW=5.0)
    conn = held["acConnections"][0]
    conn.update(connectionId=100001, installationStage="Confirmed", recordConfirmedDate="2026-01-02",
                recordCreationDate="x", evseOwnershipStatus=None)
    conn["details"].update(recordCreationDate="x", recordUpdateDate="y")
    conn["devices"][0].update(deviceId=500001, installationStage="Confirmed", recordUpdateDate="y")
    return held


def edit(change: Any) -> dict[str, Any]:
    held = aemo_copy()
    change(held)
    return held


DEVICE = "acConnections[nspConnectionId=C1].devices[nspDeviceId=D1]"
CONN = "acConnections[nspConnectionId=C1]"

CASES = [
    ("identical apart from server-owned fields, AEMO's ids and added nulls", aemo_copy(), []),
    ("an installation-level value changed",
     edit(lambda h: h.update(approvedCapacity=12.0)), [("approvedCapacity", 10.0, 12.0)]),
    ("a device detail changed",
     edit(lambda h: h["acConnections"][0]["devices"][0]["details"].update(nominalRatedCapacity=6)),
     [(f"{DEVICE}.details.nominalRatedCapacity", 5.0, 6)]),
    ("a field the store sends is gone at AEMO",
     edit(lambda h: h["acConnections"][0]["details"].pop("manufacturerName")),
     [(f"{CONN}.details.manufacturerName", "Fronius", None)]),
    ("a non-null value AEMO holds for a field the store never sends",
     edit(lambda h: h.update(comments="set at AEMO")), [("comments", None, "set at AEMO")]),
    ("a list compares whole",
     edit(lambda h: h["acConnections"][0]["details"].update(serialNumbers=["SN-1", "SN-2"])),
     [(f"{CONN}.details.serialNumbers", ["SN-1"], ["SN-1", "SN-2"])]),
    ("a device the store lists is missing at AEMO",
     edit(lambda h: h["acConnections"][0].update(devices=[])),
     [(DEVICE, store_installation()["acConnections"][0]["devices"][0], None)]),
    ("a device AEMO holds that the store no longer lists",
     edit(lambda h: h["acConnections"][0]["devices"].append(
         {"nspDeviceId": "D2", "deviceId": 500002, "type": "Storage", "count": 1, "status": "Active",
          "installationStage": "Confirmed"})),
     [(f"{CONN}.devices[nspDeviceId=D2]", None,
       {"nspDeviceId": "D2", "deviceId": 500002, "type": "Storage", "count": 1, "status": "Active"})]),
    ("a duplicate connection at AEMO is named by AEMO's id",
     edit(lambda h: h["acConnections"].append({**copy.deepcopy(h["acConnections"][0]), "connectionId": 100002})),
     [("acConnections[connectionId=100002]", None, "*")]),
    ("equipment order does not matter",
     edit(lambda h: h["acConnections"][0]["devices"].reverse()), []),
]


@pytest.mark.parametrize(("why", "held", "expected"), CASES, ids=[c[0] for c in CASES])
def test_compare_installation(why: str, held: dict[str, Any], expected: list[tuple[str, Any, Any]]) -> None:
    """Each row pins one comparison rule: what counts as a difference, its path in AEMO's spelling
    (equipment named by the operator's ids) and the two values."""
    diffs = compare_installation(store_installation(), held)
    assert [d["path"] for d in diffs] == [path for path, _, _ in expected], why
    for diff, (_, mine, theirs) in zip(diffs, expected, strict=False):
        assert diff["store"] == mine
        if theirs != "*":
            assert diff["aemo"] == theirs


def test_operator_id_changed_at_aemo_pairs_by_aemo_id() -> None:
    """When AEMO's copy of a connection carries another nspConnectionId, the store's id map pairs it
    by connectionId, so the difference is the id itself rather than a missing plus an extra connection."""
    held = edit(lambda h: h["acConnections"][0].update(nspConnectionId="C1-renamed"))
    diffs = compare_installation(store_installation(), held, {("C1", ""): 100001, ("C1", "D1"): 500001})
    assert diffs == [{"path": f"{CONN}.nspConnectionId", "store": "C1", "aemo": "C1-renamed"}]
    unpaired = compare_installation(store_installation(), held)
    assert [d["path"] for d in unpaired] == [CONN, "acConnections[nspConnectionId=C1-renamed]"]


@pytest.mark.parametrize(
    ("store", "aemo", "equal"),
    [
        (5, 5.0, True),
        (5, "5.0", True),
        (5, 5.1, False),
        (True, 1, False),
        ("2024-03-01", "2024-03-01T00:00:00Z", True),
        ("2024-03-01", "2024-03-02T00:00:00Z", False),
        (None, "", True),
        (None, [], True),
        (None, "x", False),
        (["a", 1], ["a", 1.0], True),
        ("6107", "6107", True),
    ],
)
def test_values_equal(store: Any, aemo: Any, equal: bool) -> None:
    """JSON equality as AEMO means it: numbers by value, dates by day, empty values as absent."""
    assert values_equal(store, aemo) is equal


def test_nmi_details_ignore_aemo_dates() -> None:
    """NMI details compare field by field; AEMO's record dates are not differences."""
    mine = {"nmi": "8001000001", "substation": "Cannington", "postCode": "6107", "tni": "WCNG", "status": "Active"}
    theirs = {**mine, "recordCreationDate": "a", "recordUpdateDate": "b", "tni": "WXYZ"}
    assert compare_nmi_details(mine, theirs) == [{"path": "tni", "store": "WCNG", "aemo": "WXYZ"}]


def test_conditional_equipment_and_repairability() -> None:
    """Conditional connections and devices are listed by path; a difference is repairable by a push
    only when the store has a value to send."""
    held = aemo_copy()
    held["acConnections"][0]["devices"][0]["installationStage"] = "Conditional"
    assert conditional_equipment(held) == [
        {"path": f"{DEVICE}.installationStage", "store": None, "aemo": "Conditional"}]
    assert conditional_equipment(aemo_copy()) == []
    assert repairable({"path": "x", "store": 1, "aemo": None})
    assert not repairable({"path": "x", "store": None, "aemo": 1})
