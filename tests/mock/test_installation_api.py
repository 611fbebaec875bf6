"""WEM DER Installation API v2: create, update/add, history, batched GET, three validation levels."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dersync.mock import Simulator

from .helpers import NMI_A, NMI_B, NMI_C, Api, body_of, connection, device, installation

BOTH_SHAPES = pytest.mark.parametrize(
    "sim_config", [{"response_shape": "wrapped"}, {"response_shape": "bare"}], indirect=True, ids=["wrapped", "bare"]
)


@BOTH_SHAPES
async def test_create_assigns_ids_and_server_fields(api: Api, sim: Simulator) -> None:
    """POST assigns connectionId/deviceId, stamps dates and stage, ignores client-sent server fields."""
    await api.create_nmi(NMI_A)
    conn = connection(connectionId=7, installationStage="Conditional", recordCreationDate="1999-01-01T00:00:00Z")
    r = await api.create_installation(installation(NMI_A, conn, recordCreationDate="1999-01-01T00:00:00Z"))
    assert r.status == 201, r.body
    shape = sim.config.response_shape
    inst = body_of(r, shape)
    assert r.body["transactionId"] and r.body["exceptions"] == []
    c = inst["acConnections"][0]
    assert c["connectionId"] != 7 and isinstance(c["connectionId"], int)
    assert isinstance(c["devices"][0]["deviceId"], int)
    assert c["installationStage"] == "Confirmed" and c["recordConfirmedDate"]
    assert not inst["recordCreationDate"].startswith("1999")
    assert inst["exportLimitkW"] == 5 and inst["importLimitKw"] == 20
    assert sim.state.installations[NMI_A]["acConnections"][0]["connectionId"] == c["connectionId"]
    assert sim.state.creates[NMI_A] == 1
    if shape == "bare":
        assert "data" not in r.body and r.body["nmi"] == NMI_A


async def test_create_needs_nmi_record_and_only_once(api: Api, sim: Simulator) -> None:
    """POST before the NMI record is 422/1003; a second POST for the same NMI is 422/1002."""
    r = await api.create_installation(installation(NMI_A))
    assert (r.status, r.body["errors"][0]["code"]) == (422, "1003")
    await api.register(NMI_A)
    r = await api.create_installation(installation(NMI_A))
    assert (r.status, r.body["errors"][0]["code"]) == (422, "1002")
    assert sim.state.creates[NMI_A] == 1


@BOTH_SHAPES
async def test_put_updates_with_ids_adds_without_and_keeps_absent(api: Api, sim: Simulator) -> None:
    """PUT: entries with AEMO ids are updated, entries without ids are added, absent ones kept; history grows."""
    shape = sim.config.response_shape
    created = body_of(await api.register(NMI_A, installation(NMI_A, connection("C1"), connection("C2"))), shape)
    c1, c2 = created["acConnections"]
    update = installation(NMI_A, approvedCapacity=12)
    changed = copy.deepcopy(c1)
    changed["count"] = 2
    changed["devices"][0]["details"]["nominalRatedCapacity"] = 4
    changed["devices"].append(device("D2", type="Storage", maker="Tesla", model="Powerwall 2"))
    update["acConnections"] = [changed, connection("C3")]
    r = await api.put_installation(NMI_A, update)
    assert r.status == 200, r.body
    inst = body_of(r, shape)
    by_nsp = {c["nspConnectionId"]: c for c in inst["acConnections"]}
    assert set(by_nsp) == {"C1", "C2", "C3"}
    assert by_nsp["C1"]["connectionId"] == c1["connectionId"] and by_nsp["C1"]["count"] == 2
    assert by_nsp["C2"] == c2  # absent from the PUT: kept untouched
    assert by_nsp["C3"]["connectionId"] not in (c1["connectionId"], c2["connectionId"])
    devs = by_nsp["C1"]["devices"]
    assert [d["nspDeviceId"] for d in devs] == ["D1", "D2"]
    assert devs[0]["deviceId"] == c1["devices"][0]["deviceId"] and devs[0]["details"]["nominalRatedCapacity"] == 4
    assert inst["approvedCapacity"] == 12
    assert sim.state.duplicate_equipment() == []

    hist = await api.call("GET", api.inst_url(f"/{NMI_A}/history"))
    versions = body_of(hist, shape)
    assert hist.status == 200 and len(versions) == 2 == len(sim.state.history[NMI_A])
    assert versions[0]["recordEndDate"] == versions[1]["recordStartDate"] and versions[1]["recordEndDate"] is None
    assert len(versions[0]["acConnections"]) == 2


async def test_put_without_ids_duplicates_equipment(api: Api, sim: Simulator) -> None:
    """Re-sending a connection without its connectionId adds a duplicate, which duplicate_equipment() reports."""
    await api.register(NMI_A)
    r = await api.put_installation(NMI_A, installation(NMI_A))
    assert r.status == 200
    dupes = sim.state.duplicate_equipment()
    assert [(d["nmi"], d["kind"], d["nspConnectionId"]) for d in dupes] == [(NMI_A, "connection", "C1")]


async def test_put_unknown_installation_is_404(api: Api) -> None:
    """PUT for an NMI without an installation is 404 (the client should POST instead)."""
    await api.create_nmi(NMI_A)
    r = await api.put_installation(NMI_A, installation(NMI_A))
    assert r.status == 404


def _with(fn: Any) -> dict[str, Any]:
    data = installation(NMI_A)
    fn(data)
    return data


def _conn(fn: Any) -> dict[str, Any]:
    """NMI_A's installation with its first AC connection changed by `fn`."""
    return _with(lambda d: fn(d["acConnections"][0]))


def _dev(fn: Any) -> dict[str, Any]:
    """NMI_A's installation with the first device of its first AC connection changed by `fn`."""
    return _with(lambda d: fn(d["acConnections"][0]["devices"][0]))


INSTALLATION_CASES: list[tuple[str, str, Any, int, list[str]]] = [
    # id, method, body, status, error codes (sorted)
    ("not wrapped", "POST", installation(NMI_A), 400, ["1020"]),
    ("data not object", "POST", {"data": [installation(NMI_A)]}, 400, ["1020"]),
    ("extra top-level key", "POST", {"data": installation(NMI_A), "meta": 1}, 400, ["1020"]),
    ("string number", "POST", {"data": _with(lambda d: d.update(approvedCapacity="10"))}, 400, ["1020"]),
    ("bool string", "POST", {"data": _with(lambda d: d.update(islandableInstallation=False))}, 400, ["1020"]),
    ("misspelt field", "POST", {"data": _with(lambda d: d.update(exportLimitKw=5))}, 400, ["1020"]),
    ("device count string", "POST", {"data": _dev(lambda v: v.update(count="1"))}, 400, ["1020"]),
    ("bad nmi", "POST", {"data": _with(lambda d: d.update(nmi="12345"))}, 422, ["1000"]),
    ("no connections", "POST", {"data": _with(lambda d: d.update(acConnections=[]))}, 422, ["1004"]),
    ("no status", "POST", {"data": _with(lambda d: d["acConnections"][0].pop("status"))}, 422, ["1004"]),
    ("no device type", "POST", {"data": _dev(lambda v: v.pop("type"))}, 422, ["1004"]),
    ("bad equipmentType", "POST", {"data": _conn(lambda c: c.update(equipmentType="Windmill"))}, 422, ["1006"]),
    ("bad device type", "POST", {"data": _dev(lambda v: v.update(type="PV"))}, 422, ["1007"]),
    ("count zero", "POST", {"data": _with(lambda d: d["acConnections"][0].update(count=0))}, 422, ["1008"]),
    ("count fraction", "POST", {"data": _with(lambda d: d["acConnections"][0].update(count=1.5))}, 422, ["1008"]),
    ("negative capacity", "POST", {"data": _with(lambda d: d.update(approvedCapacity=-1))}, 422, ["1009"]),
    ("bad date", "POST", {"data": _conn(lambda c: c.update(commissioningDate="01/03/2024"))}, 422, ["1012"]),
    ("two problems", "POST", {"data": _conn(lambda c: c.update(count=0, equipmentType="X"))}, 422, ["1006", "1008"]),
    # Numbers past a double's range are still JSON numbers: judged, never a 500.
    ("huge count beside a bad one", "POST", {"data": _with(lambda d: (d["acConnections"][0].update(count=10**400),
                                                                    d["acConnections"][0]["devices"][0].update(count=1.5)))},
     422, ["1008"]),
    ("huge capacity, negative", "POST", {"data": _with(lambda d: d.update(approvedCapacity=-10**400))}, 422, ["1009"]),
    ("path mismatch", "PUT", {"data": installation(NMI_B)}, 422, ["1005"]),
    ("unknown connectionId", "PUT", {"data": _conn(lambda c: c.update(connectionId=1))}, 422, ["1010"]),
    ("huge connectionId", "PUT", {"data": _conn(lambda c: c.update(connectionId=10**400))}, 422, ["1010"]),
    ("unknown deviceId", "PUT", {"data": _dev(lambda v: v.update(deviceId=1))}, 422, ["1011"]),
]


@pytest.mark.parametrize(
    ("case", "method", "body", "status", "codes"), INSTALLATION_CASES, ids=[c[0] for c in INSTALLATION_CASES]
)
async def test_installation_validation(
    api: Api, sim: Simulator, case: str, method: str, body: Any, status: int, codes: list[str]
) -> None:
    """Schema failures 400/1020, first-level failures 422 with one 1000-1999 entry per problem; nothing stored."""
    await api.create_nmi(NMI_A)
    if method == "PUT":
        await api.create_installation(installation(NMI_A))
    before = copy.deepcopy(sim.state.installations)
    url = api.inst_url(f"/{NMI_A}" if method == "PUT" else "")
    r = await api.call(method, url, body=body)
    assert r.status == status, r.body
    assert sorted(e["code"] for e in r.body["errors"]) == codes
    assert sim.state.installations == before


async def test_huge_numbers_and_deep_nesting_are_answered_not_crashed_on(api: Api, sim: Simulator) -> None:
    """A whole number past 1e308 is a count AEMO's schema admits (type number), and a body nested
    deeper than any decoder follows is a 400/1020, like any other JSON it cannot read."""
    await api.create_nmi(NMI_A)
    r = await api.create_installation(_with(lambda d: d.update(approvedCapacity=10**400) or
                                            d["acConnections"][0].update(count=10**400)))
    assert r.status == 201, r.body
    r = await api.call("POST", api.inst_url(), data=b'{"data": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
    assert (r.status, [e["code"] for e in r.body["errors"]]) == (400, ["1020"])


async def test_get_installation_and_404(api: Api) -> None:
    """GET returns the current version; an NMI without installation is 404 (history too)."""
    await api.register(NMI_A)
    assert (await api.get_installation(NMI_A)).body["data"]["nmi"] == NMI_A
    assert (await api.get_installation(NMI_B)).status == 404
    assert (await api.call("GET", api.inst_url(f"/{NMI_B}/history"))).status == 404


# ------------------------------------------------------------------------------- second level
async def test_second_level_exceptions_and_conditional_stage(api: Api, sim: Simulator) -> None:
    """Unknown inverter 2023, unknown device 2024, over-capacity 2040: stored, 201, Conditional; fixing confirms."""
    await api.create_nmi(NMI_A)
    data = installation(
        NMI_A,
        connection("C1", maker="Acme", model="X1"),
        connection("C2", devices=[device("D9", maker="Nobody", model="N0")]),
        connection("C3", equipmentInjectionCapacity=50),
        connection("C4"),
    )
    r = await api.create_installation(data)
    assert r.status == 201
    excs = {(e["code"], e["nspConnectionId"], e.get("nspDeviceId")) for e in r.body["exceptions"]}
    assert excs == {(2023, "C1", None), (2024, "C2", "D9"), (2040, "C3", None)}
    assert all(isinstance(e["connectionId"], int) and e["title"] and e["detail"] for e in r.body["exceptions"])
    stages = {c["nspConnectionId"]: c["installationStage"] for c in r.body["data"]["acConnections"]}
    assert stages == {"C1": "Conditional", "C2": "Confirmed", "C3": "Conditional", "C4": "Confirmed"}
    c2 = r.body["data"]["acConnections"][1]
    assert c2["devices"][0]["installationStage"] == "Conditional" and c2["devices"][0]["recordConfirmedDate"] is None
    assert sim.state.installations[NMI_A]["acConnections"][0]["installationStage"] == "Conditional"
    assert (await api.get_installation(NMI_A)).body["exceptions"] == r.body["exceptions"]

    fixed = copy.deepcopy(r.body["data"]["acConnections"][0])
    fixed["details"].update(manufacturerName="SMA", modelNumber="Sunny Boy 5.0")
    r2 = await api.put_installation(NMI_A, installation(NMI_A, fixed))
    assert {e["nspConnectionId"] for e in r2.body["exceptions"]} == {"C2", "C3"}
    c1 = r2.body["data"]["acConnections"][0]
    assert c1["installationStage"] == "Confirmed" and c1["recordConfirmedDate"]


async def test_device_capacity_sum_checked_without_injection_capacity(api: Api) -> None:
    """Without equipmentInjectionCapacity, the devices' nominalRatedCapacity sum is checked (2040)."""
    await api.create_nmi(NMI_A)
    conn = connection(devices=[device("D1"), device("D2")])
    del conn["equipmentInjectionCapacity"]
    r = await api.create_installation(installation(NMI_A, conn, approvedCapacity=8))
    assert [e["code"] for e in r.body["exceptions"]] == [2040]


# ------------------------------------------------------------------------------- batched GET
@pytest.mark.parametrize(
    "sim_config",
    [{"response_shape": "wrapped"}, {"response_shape": "bare"},
     {"response_shape": "bare", "bare_list_paging_headers": True}],
    indirect=True,
    ids=["wrapped", "bare", "bare+headers"],
)
async def test_batched_get_paging(api: Api, sim: Simulator) -> None:
    """GET /installation?nmi=... returns found NMIs sorted, paged by pageSize; unknown NMIs are simply absent."""
    nmis = [f"80010001{i:02d}" for i in range(30)]
    for n in reversed(nmis):
        await api.register(n)
    query = ",".join([*nmis, "8001999999"])
    shape = sim.config.response_shape
    p1 = await api.call("GET", api.inst_url(), params={"nmi": query, "pageSize": "25"})
    p2 = await api.call("GET", api.inst_url(), params={"nmi": query, "pageSize": "25", "page": "2"})
    p3 = await api.call("GET", api.inst_url(), params={"nmi": query, "pageSize": "25", "page": "3"})
    assert (p1.status, p2.status, p3.status) == (200, 200, 200)
    got = [i["nmi"] for i in body_of(p1, shape) + body_of(p2, shape)]
    assert got == nmis
    assert body_of(p3, shape) == []
    if shape == "wrapped":
        assert (p1.body["page"], p1.body["pageSize"], p1.body["totalPages"], p1.body["totalRecords"]) == (1, 25, 2, 30)
        assert p1.body["transactionId"]
    else:
        assert isinstance(p1.body, list) and p1.headers["X-Transaction-Id"]
        if sim.config.bare_list_paging_headers:
            assert p1.headers["X-Total-Records"] == "30" and p1.headers["X-Total-Pages"] == "2"
        else:
            assert "X-Total-Records" not in p1.headers


async def test_batched_get_filters(api: Api) -> None:
    """installationStage, equipmentType, deviceType and commissioning-date filters select installations."""
    await api.register(NMI_A)
    await api.register(NMI_B, installation(NMI_B, connection(maker="Acme", model="Z", commissioningDate="2023-01-05")))
    await api.register(
        NMI_C,
        installation(NMI_C, connection(equipmentType="Battery Storage Inverter",
                                       devices=[device(type="Storage", maker="Tesla", model="Powerwall 2")])),
    )

    async def nmis(**params: str) -> list[str]:
        r = await api.call("GET", api.inst_url(), params=params)
        assert r.status == 200, r.body
        return [i["nmi"] for i in r.body["data"]]

    assert await nmis(installationStage="Conditional") == [NMI_B]
    assert await nmis(installationStage="Confirmed") == [NMI_A, NMI_C]
    assert await nmis(equipmentType="Battery Storage Inverter") == [NMI_C]
    assert await nmis(deviceType="Storage") == [NMI_C]
    assert await nmis(toCommissioningDate="2023-12-31") == [NMI_B]
    assert await nmis(fromCommissioningDate="2024-01-01", nmi=f"{NMI_A},{NMI_B}") == [NMI_A]


LIST_ERRORS = [
    ("no filter", {}),
    ("only paging", {"page": "1", "pageSize": "25"}),
    ("pageSize 10", {"nmi": NMI_A, "pageSize": "10"}),
    ("page 0", {"nmi": NMI_A, "page": "0"}),
    ("page text", {"nmi": NMI_A, "page": "one"}),
    ("bad stage", {"installationStage": "Pending"}),
    ("bad equipmentType", {"equipmentType": "Windmill"}),
    ("bad deviceType", {"deviceType": "PV"}),
    ("bad date", {"fromCommissioningDate": "2024/01/01"}),
    ("101 nmis", {"nmi": ",".join(f"80010{i:05d}" for i in range(101))}),
]


@pytest.mark.parametrize(("case", "params"), LIST_ERRORS, ids=[c[0] for c in LIST_ERRORS])
async def test_batched_get_bad_query_is_400(api: Api, case: str, params: dict[str, str]) -> None:
    """The batched GET needs a filter, pageSize 25/50/100, page >= 1, enumerated values, <= 100 NMIs."""
    r = await api.call("GET", api.inst_url(), params=params)
    assert r.status == 400 and r.body["errors"][0]["code"] == "400"


# ---------------------------------------------------------------------------- state helpers
async def test_tamper_and_delete(api: Api, sim: Simulator) -> None:
    """tamper() changes AEMO's copy behind the client's back; delete_installation() makes GET 404."""
    await api.register(NMI_A)
    sim.state.tamper(NMI_A, "acConnections.0.details.modelNumber", "Primo 6.0-1")
    r = await api.get_installation(NMI_A)
    assert r.body["data"]["acConnections"][0]["details"]["modelNumber"] == "Primo 6.0-1"
    sim.state.tamper(NMI_A, lambda inst: inst.update(comments="edited at AEMO"))
    assert sim.state.installations[NMI_A]["comments"] == "edited at AEMO"
    assert len(sim.state.history[NMI_A]) == 3
    assert sim.state.delete_installation(NMI_A)
    assert (await api.get_installation(NMI_A)).status == 404
    assert (await api.create_installation(installation(NMI_A))).status == 201
    assert sim.state.creates[NMI_A] == 2
    snap = sim.state.snapshot()
    assert NMI_A in snap["installations"] and snap["counters"]["creates"][NMI_A] == 2
