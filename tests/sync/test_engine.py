"""End-to-end sync passes: the real store, the real client, the simulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from dersync.mock import Simulator
from dersync.settings import Enumerations, Settings
from dersync.store import Store
from dersync.sync import PassSummary, sync_once
from dersync.testing import (
    api_requests,
    connection,
    device,
    installation,
    load,
    nmi_details,
    nmi_for,
    read_back,
    record,
    wait_for,
)


async def run_pass(settings: Settings, store: Store, **kwargs: Any) -> PassSummary:
    return await sync_once(settings, store, **kwargs)


async def not_resent_until_fixed_then_resolved(settings: Settings, store: Store, simulator: Simulator,
                                               nmi: str) -> None:
    """The rejected installation costs no request while unchanged; once fixed it reaches AEMO and
    its exceptions are no longer open."""
    before = api_requests(simulator.state)
    await run_pass(settings, store)
    assert api_requests(simulator.state) == before

    await load(store, [{"installation": installation(nmi)}])
    await run_pass(settings, store)
    assert nmi in simulator.state.installations
    assert await store.list_exceptions(open_only=True, nmi=nmi) == []


async def test_first_pass_creates_nmi_then_installation(settings: Settings, store: Store, simulator: Simulator) -> None:
    """A new record becomes an NMI record and an installation at AEMO, with AEMO's ids remembered."""
    await load(store, [record(nmi_for(i)) for i in range(3)])

    summary = await run_pass(settings, store)

    assert summary.created == 6 and summary.updated == 0
    assert summary.nmi_created == 3 and summary.installations_created == 3
    assert sorted(simulator.state.installations) == [nmi_for(i) for i in range(3)]
    assert all(simulator.state.nmi_creates[nmi_for(i)] == 1 for i in range(3))
    ids = await store.load_ids([nmi_for(0)])
    held = simulator.state.installations[nmi_for(0)]["acConnections"][0]
    assert ids[nmi_for(0)][(held["nspConnectionId"], "")] == held["connectionId"]
    assert (await read_back(store, simulator.state)).ok
    status = await store.status()
    assert status["records"]["synced"] == 3 and status["due"] == 0


async def test_unchanged_records_cause_no_requests(settings: Settings, store: Store, simulator: Simulator) -> None:
    """A second pass over unchanged records sends nothing at all, not even a token request, and
    re-importing identical data does not make them due."""
    items = [record(nmi_for(i)) for i in range(5)]
    await load(store, items)
    await run_pass(settings, store)
    before = sum(simulator.state.requests_by_route.values())

    await load(store, items)
    summary = await run_pass(settings, store)

    assert sum(simulator.state.requests_by_route.values()) == before
    assert summary.requests == 0 and summary.sent == 0


async def test_update_adds_equipment_without_duplicating(settings: Settings, store: Store,
                                                         simulator: Simulator) -> None:
    """A changed installation is PUT with AEMO's connectionId/deviceId, so existing equipment is
    updated in place and only the new device is added."""
    nmi = nmi_for(1)
    await load(store, [record(nmi)])
    await run_pass(settings, store)
    first = simulator.state.installations[nmi]["acConnections"][0]

    changed = installation(nmi, connections=[connection(f"C-{nmi}-1", devices=[
        device(f"C-{nmi}-1-D1", kw=6.0), device(f"C-{nmi}-1-D2", kind="Storage", kw=2.0,
                                              maker=("Tesla", "Powerwall 2"))])])
    await load(store, [{"installation": changed}])
    summary = await run_pass(settings, store)

    held = simulator.state.installations[nmi]["acConnections"]
    assert summary.updated == 1 and summary.created == 0
    assert len(held) == 1 and held[0]["connectionId"] == first["connectionId"]
    assert [d["nspDeviceId"] for d in held[0]["devices"]] == [f"C-{nmi}-1-D1", f"C-{nmi}-1-D2"]
    assert held[0]["devices"][0]["deviceId"] == first["devices"][0]["deviceId"]
    assert simulator.state.creates[nmi] == 1
    assert (await read_back(store, simulator.state)).ok


async def test_invalid_record_is_a_local_exception_and_the_batch_goes_on(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """A record failing local validation is never sent; its exception names the field; the valid
    records beside it are synced."""
    bad = installation(nmi_for(2), approvedCapacity="10")
    await load(store, [record(nmi_for(1)), {"nmiDetails": nmi_details(nmi_for(2)), "installation": bad},
                       record(nmi_for(3))])

    summary = await run_pass(settings, store)

    assert nmi_for(2) not in simulator.state.installations
    assert nmi_for(1) in simulator.state.installations and nmi_for(3) in simulator.state.installations
    rows = await store.list_exceptions(open_only=True, nmi=nmi_for(2))
    assert [(r["level"], r["field"]) for r in rows] == [("local", "approvedCapacity")]
    assert rows[0]["detail"].startswith("approvedCapacity: ")
    assert rows[0]["firstSeen"].utcoffset() == timedelta(0)
    assert summary.rejected_local == 1


async def test_oversized_record_is_never_sent(make_settings: Any, store: Store, simulator: Simulator) -> None:
    """A part whose serialised size exceeds the payload limit becomes a local SIZE exception and
    no request carries it (the limit is lowered here; the arithmetic is the same at 10 MB)."""
    settings = make_settings(max_payload_bytes=2_000)
    nmi = nmi_for(4)
    big = installation(nmi, connections=[connection(f"C-{nmi}-{i}") for i in range(10)])
    await load(store, [{"nmiDetails": nmi_details(nmi), "installation": big}])

    await run_pass(settings, store)

    assert nmi not in simulator.state.installations
    rows = await store.list_exceptions(open_only=True, nmi=nmi, level="local")
    assert [r["code"] for r in rows] == ["SIZE"]
    assert "exceeds AEMO's limit" in rows[0]["detail"]


async def test_first_level_rejection_is_recorded_not_resent_and_resolved(
    make_settings: Any, store: Store, simulator: Simulator
) -> None:
    """A 422 is recorded as a first-level exception with AEMO's code and transactionId; the record
    is not resent while unchanged; once fixed it is sent and the exception is resolved."""
    enumerations = Enumerations()
    enumerations.equipment_types.append("Fuel Cell")  # configured locally, unknown to AEMO
    settings = make_settings(enumerations=enumerations)
    nmi = nmi_for(5)
    rejected = installation(nmi, connections=[connection(f"C-{nmi}-1", equipment_type="Fuel Cell")])
    await load(store, [{"nmiDetails": nmi_details(nmi), "installation": rejected}])

    summary = await run_pass(settings, store)
    rows = await store.list_exceptions(open_only=True, nmi=nmi)
    assert summary.rejected_first == 1
    assert [(r["level"], r["code"]) for r in rows] == [("first", "1006")]
    assert rows[0]["transactionId"]

    await not_resent_until_fixed_then_resolved(settings, store, simulator, nmi)
    resolved = await store.list_exceptions(nmi=nmi)
    assert [r["status"] for r in resolved] == ["resolved"]


async def test_schema_rejection_is_recorded_not_resent_and_resolved(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """A 400 (AEMO's schema refusing a field our validation still allows) is recorded as a
    `schema` exception with code 1020 and AEMO's transactionId; the NMI details in the same
    record still sync; the installation is not resent while unchanged and the exception is
    resolved once the record changes and AEMO accepts it."""
    simulator.config.withdrawn_fields = ("comments",)
    nmi = nmi_for(6)
    await load(store, [{"nmiDetails": nmi_details(nmi), "installation": installation(nmi, comments="retrofit")}])

    summary = await run_pass(settings, store)
    rows = await store.list_exceptions(open_only=True, nmi=nmi)
    assert summary.rejected_schema == 1
    assert [(r["level"], r["code"]) for r in rows] == [("schema", "1020")]
    assert rows[0]["transactionId"] and "comments" in rows[0]["detail"]
    assert nmi in simulator.state.nmis and nmi not in simulator.state.installations

    await not_resent_until_fixed_then_resolved(settings, store, simulator, nmi)


async def test_second_level_exception_marks_conditional_and_resolves(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """Unapproved equipment is accepted but flagged: a second-level exception tied to the
    connection, the stage Conditional; replacing the equipment resolves it."""
    nmi = nmi_for(6)
    flagged = installation(nmi, connections=[connection(f"C-{nmi}-1", maker=("Acme Solar", "X-1000"))])
    await load(store, [{"nmiDetails": nmi_details(nmi), "installation": flagged}])

    summary = await run_pass(settings, store)

    assert summary.flagged_conditional == 1
    rows = await store.list_exceptions(open_only=True, nmi=nmi, level="second")
    assert [r["code"] for r in rows] == ["2023"]
    assert rows[0]["nspConnectionId"] == f"C-{nmi}-1" and rows[0]["transactionId"]
    assert simulator.state.installations[nmi]["acConnections"][0]["installationStage"] == "Conditional"
    assert (await store.status())["records"]["synced"] == 1

    await load(store, [{"installation": installation(nmi)}])
    await run_pass(settings, store)
    assert await store.list_exceptions(open_only=True, nmi=nmi) == []
    assert simulator.state.installations[nmi]["acConnections"][0]["installationStage"] == "Confirmed"


async def test_installation_waits_for_its_nmi(settings: Settings, store: Store, simulator: Simulator) -> None:
    """When the NMI details are invalid and AEMO holds no NMI record, the installation is not
    sent; fixing the NMI details sends both."""
    nmi = nmi_for(7)
    await load(store, [{"nmiDetails": nmi_details(nmi, postCode="WA6000"), "installation": installation(nmi)}])

    await run_pass(settings, store)
    assert nmi not in simulator.state.nmis and nmi not in simulator.state.installations
    codes = {r["code"] for r in await store.list_exceptions(open_only=True, nmi=nmi)}
    assert codes == {"LOCAL", "NMI_NOT_REGISTERED"}

    await load(store, [{"nmiDetails": nmi_details(nmi)}])
    await run_pass(settings, store)
    assert nmi in simulator.state.installations
    assert await store.list_exceptions(open_only=True, nmi=nmi) == []


async def test_token_expiry_mid_pass_loses_nothing(make_settings: Any, store: Store, simulator: Simulator) -> None:
    """When AEMO's token expires in the middle of a pass the client fetches a new one and every
    record still arrives."""
    await load(store, [record(nmi_for(i)) for i in range(20)])
    simulator.config.latency_seconds = 0.005  # a pass long enough to be interrupted
    settings = make_settings(concurrency=2)

    async def expire_tokens() -> None:
        for arrived in (5, 12):
            await wait_for(lambda n=arrived: len(simulator.state.installations) >= n, f"{arrived} installations",
                           interval=0.001)
            simulator.clock.advance(4000)

    expiries = asyncio.create_task(expire_tokens())
    summary = await run_pass(settings, store)
    await expiries

    assert simulator.state.token_issued_total >= 3
    assert summary.left_due == 0
    assert len(simulator.state.installations) == 20
    assert (await read_back(store, simulator.state)).ok


@pytest.mark.parametrize("fault_kinds", [("500", "503"), ("drop",), ("drop_after_apply",)])
async def test_injected_faults_lose_and_duplicate_nothing(
    make_settings: Any, store: Store, simulator: Simulator, fault_kinds: tuple[str, ...]
) -> None:
    """With a third of API calls failing, repeated passes end with every record at AEMO exactly as
    in the store, no NMI created twice and no equipment duplicated."""
    settings = make_settings(max_retries=2)
    await load(store, [record(nmi_for(i)) for i in range(30)])
    simulator.config.fault_rate = 0.3
    simulator.config.fault_kinds = fault_kinds

    for _ in range(15):
        await run_pass(settings, store)
        if (await store.status())["due"] == 0:
            break

    simulator.config.fault_rate = 0.0
    status = await store.status()
    assert status["due"] == 0 and status["records"]["synced"] == 30
    report = await read_back(store, simulator.state)
    assert report.checked == 30 and report.ok, report


async def test_bad_credentials_stop_the_pass(make_settings: Any, store: Store, simulator: Simulator) -> None:
    """AEMO refusing the client id/secret is fatal for the pass, and the message carries no secret."""
    from dersync.errors import AuthError

    settings = make_settings(client_secret="wrong-secret-value")
    await load(store, [record(nmi_for(1))])

    with pytest.raises(AuthError) as caught:
        await run_pass(settings, store)

    assert "wrong-secret-value" not in str(caught.value)
    assert (await store.status())["due"] == 1
    assert simulator.state.installations == {}


async def test_exceptions_keep_raw_aemo_object(settings: Settings, store: Store, simulator: Simulator) -> None:
    """Second-level exceptions keep AEMO's original object for admins (raw JSON)."""
    nmi = nmi_for(9)
    flagged = installation(nmi, connections=[connection(f"C-{nmi}-1", maker=("Acme Solar", "X-1000"))])
    await load(store, [{"nmiDetails": nmi_details(nmi), "installation": flagged}])
    await run_pass(settings, store)

    from sqlalchemy import select

    from dersync.store.tables import validation_exception

    async with store.engine.connect() as conn:
        query = select(validation_exception.c.raw).where(validation_exception.c.nmi == nmi)
        raw = (await conn.execute(query)).scalar_one()
    assert json.loads(raw)["code"] in (2023, "2023")


async def test_full_concurrency_pass_over_the_sample_mix_records_every_outcome(
    make_settings: Any, store: Store, simulator: Simulator
) -> None:
    """With sixteen records in flight, one pass over the realistic sample mix records an outcome
    for every record (none left due, none half-recorded) and every synced record is at AEMO
    exactly as in the store."""
    from dersync.samples import sample_records

    settings = make_settings(concurrency=16, rate_limit_per_minute=60_000)
    await load(store, sample_records(300))

    summary = await run_pass(settings, store)

    status = await store.status()
    assert status["due"] == 0, status
    assert status["last_sync"]["status"] == "ok"
    assert summary.records == 300
    assert status["records"]["synced"] + status["records"]["rejected"] == 300
    report = await read_back(store, simulator.state)
    assert report.checked == status["records"]["synced"] and report.ok, report


async def test_a_create_refused_because_aemo_already_holds_the_record_becomes_an_update(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """A record registered at AEMO by someone else (AEMO's portal, or a sender whose answer was
    lost) between this pass's lookup and its create gets a refused create (422, already exists).
    That is a question before a rejection: the pass reads AEMO's copy (one GET), updates it with
    AEMO's equipment ids instead, and records the record synced with no false exception; nothing
    is duplicated at AEMO."""
    nmi = nmi_for(7)
    item = record(nmi)
    await load(store, [item])
    state = simulator.state
    lookup = state.query

    def lookup_then_registered_elsewhere(*args: Any, **kwargs: Any) -> list[str]:
        found = lookup(*args, **kwargs)
        if nmi not in state.nmis:  # the portal registers the NMI and its installation right after
            state.create_nmi(item["nmiDetails"])
            state.create_installation(item["installation"], lambda _inst: ([], set(), set()))
        return found

    state.query = lookup_then_registered_elsewhere  # type: ignore[method-assign]
    summary = await run_pass(settings, store)

    refused = {route: state.count(route=route, status=422) for route in ("nmi_create", "installation_create")}
    assert refused == {"nmi_create": 1, "installation_create": 1}
    assert state.count(route="nmi_update", status=200) == 1
    assert state.count(route="installation_update", status=200) == 1
    assert summary.nmi_updated == 1 and summary.installations_updated == 1 and summary.rejected_first == 0
    assert await store.list_exceptions(open_only=True, nmi=nmi) == []
    [stored] = await store.load_records([nmi])
    assert stored.sync_state == "synced" and stored.inst_at_aemo is True
    assert state.creates[nmi] == 1 and state.nmi_creates[nmi] == 1
    report = await read_back(store, state)
    assert report.ok and report.checked == 1, report


async def test_lookups_are_spent_only_where_aemo_may_already_hold_the_record(
    make_settings: Any, store: Store, simulator: Simulator
) -> None:
    """On a fresh register, a pass stops looking up records new to the store once 200 of them
    were found absent at AEMO (each create then goes straight out); records AEMO turns out to
    hold already (registered through its portal) are asked about when their create is refused,
    updated instead, and lookups resume. Nothing is duplicated either way."""
    settings = make_settings(store_batch_size=100)
    await load(store, [record(nmi_for(i)) for i in range(600)])
    await run_pass(settings, store)
    assert simulator.state.count(route="installation_list") == 2  # 200 NMIs looked up, then trusted
    assert simulator.state.count(route="installation_create", status=422) == 0
    assert (await read_back(store, simulator.state)).ok

    held_elsewhere = [nmi_for(i) for i in (1350, 1450, 1550)]  # after the next pass's probe
    for nmi in held_elsewhere:
        simulator.state.create_nmi(nmi_details(nmi))
        simulator.state.create_installation(installation(nmi), lambda _inst: ([], set(), set()))
    await load(store, [record(nmi_for(i)) for i in range(1000, 1600)])
    lists_before = simulator.state.count(route="installation_list")
    await run_pass(settings, store)
    assert simulator.state.count(route="installation_create", status=422) >= 1  # asked about, then updated
    assert simulator.state.count(route="installation_list") - lists_before >= 3  # probed, then looking again
    assert all(simulator.state.creates[nmi] == 1 for nmi in held_elsewhere)
    report = await read_back(store, simulator.state)
    assert report.ok and report.checked == 1200, report
