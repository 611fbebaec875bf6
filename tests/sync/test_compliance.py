"""First acceptances recorded by real sync passes (the real store, client and simulator over
loopback HTTP), and the compliance states judged from them with fixed dates.

Times AEMO stamps are fixed in the simulator's register where a test needs a date; where an
acceptance is the time of a pass, the commissioning dates are chosen so that the state is the
same whatever day the tests run (a 2020 deadline has passed; a 2099 one has not)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from dersync.compliance import DeadlineRules, compliance_rows
from dersync.mock import Simulator
from dersync.settings import Enumerations, Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import commissioned, connection, installation, load, nmi_details, nmi_for
from dersync.vocabulary import AcceptanceRule, ComplianceState


async def answer_of(store: Store, nmi: str, method: str) -> dict[str, Any]:
    """The ledger row of the NMI's accepted installation write with this method."""
    return next(r for r in await store.ledger_for_nmi(nmi)
                if r["part"] == "installation" and r["method"] == method and r["status"] in (200, 201))


async def states(settings: Settings, store: Store, today: date) -> dict[tuple[str, str | None], tuple[str, Any]]:
    rules = DeadlineRules.from_settings(settings)
    return {(row.nmi, row.nsp_connection_id): (row.state, row.blocking_exception)
            async for batch in compliance_rows(store, rules, today) for row in batch}


async def test_a_connection_dersync_adds_is_accepted_when_aemos_answer_came(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """The first acceptance of each connection a create adds is the answeredAt of that POST in the
    ledger, with its transactionId; a later update leaves it, and a connection the update adds is
    accepted when the PUT's answer came."""
    nmi = nmi_for(1)
    await load(store, [{"nmiDetails": nmi_details(nmi),
                        "installation": installation(nmi, connections=[connection("A"), connection("B")])}])
    await sync_once(settings, store)
    post = await answer_of(store, nmi, "POST")

    await load(store, [{"installation": installation(nmi, connections=[connection("A", kw=6.0), connection("B"),
                                                                       connection("C")])}])
    await sync_once(settings, store)
    put = await answer_of(store, nmi, "PUT")

    found = (await store.first_acceptances([nmi]))[nmi]
    assert {key: (a.accepted_at, a.transaction_id, a.rule) for key, a in found.items()} == {
        "A": (post["answeredAt"], post["transactionId"], AcceptanceRule.ANSWERED),
        "B": (post["answeredAt"], post["transactionId"], AcceptanceRule.ANSWERED),
        "C": (put["answeredAt"], put["transactionId"], AcceptanceRule.ANSWERED),
    }
    assert post["answeredAt"] < put["answeredAt"]


async def test_a_record_rejected_then_fixed_is_judged_by_its_first_acceptance(
    make_settings: Any, store: Store, simulator: Simulator
) -> None:
    """A connection AEMO rejects (422) has no acceptance: it is overdue, blocked by AEMO's code.
    Fixed, it is accepted by the next pass (the answer of that write, not the rejection, counts);
    a later rejection and a later acceptance do not move that first acceptance."""
    enumerations = Enumerations()
    enumerations.equipment_types.append("Fuel Cell")  # configured locally, unknown to AEMO
    settings = make_settings(enumerations=enumerations)
    nmi = nmi_for(2)
    # Deadline Tuesday 4 February 2020 (Australia Day is observed on Monday 27 January).
    good = commissioned(connection("A"), "2020-01-06")
    bad = commissioned(connection("A", equipment_type="Fuel Cell"), "2020-01-06")
    await load(store, [{"nmiDetails": nmi_details(nmi), "installation": installation(nmi, connections=[bad])}])

    await sync_once(settings, store)
    assert await store.first_acceptances([nmi]) == {}
    assert (await states(settings, store, date(2020, 2, 6)))[(nmi, "A")] == (ComplianceState.OVERDUE, "1006")

    await load(store, [{"installation": installation(nmi, connections=[good])}])
    await sync_once(settings, store)
    accepted = await answer_of(store, nmi, "POST")
    first = (await store.first_acceptances([nmi]))[nmi]["A"]
    assert (first.accepted_at, first.transaction_id) == (accepted["answeredAt"], accepted["transactionId"])
    assert (await states(settings, store, date(2020, 2, 6)))[(nmi, "A")] == (ComplianceState.LATE, None)

    await load(store, [{"installation": installation(nmi, connections=[bad])}])
    await sync_once(settings, store)  # rejected again (an update this time)
    await load(store, [{"installation": installation(nmi, connections=[commissioned(connection("A", kw=7.0),
                                                                                    "2020-01-06")])}])
    await sync_once(settings, store)  # accepted again
    assert (await store.first_acceptances([nmi]))[nmi]["A"] == first
    assert (await states(settings, store, date(2026, 12, 3)))[(nmi, "A")] == (ComplianceState.LATE, None)


async def test_a_connection_aemo_held_before_dersync_sent_it_is_judged_by_aemos_record_creation_date(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """Connections registered at AEMO before dersync first sent them (here through the portal:
    written into the simulator's register, with AEMO's own recordCreationDate fixed) are found by
    the pass, updated with AEMO's ids, and recorded at AEMO's recordCreationDate: 10 June 2026 is
    within the deadline of a connection commissioned on 25 May (23 June, WA Day skipped), 24 June
    is not. A connection the same update adds is accepted when the answer came."""
    nmi = nmi_for(3)
    portal = installation(nmi, connections=[commissioned(connection("A"), "2026-05-25"),
                                            commissioned(connection("B"), "2026-05-25")])
    state = simulator.state
    state.create_nmi(nmi_details(nmi))
    state.create_installation(portal, lambda _inst: ([], set(), set()))
    state.tamper(nmi, "acConnections.0.recordCreationDate", "2026-06-10T02:00:00.000Z")  # 10:00 in Perth
    state.tamper(nmi, "acConnections.1.recordCreationDate", "2026-06-23T16:30:00.000Z")  # 24 June 00:30 in Perth
    ours = installation(nmi, connections=[*portal["acConnections"], commissioned(connection("C"), "2099-01-05")])
    await load(store, [{"nmiDetails": nmi_details(nmi), "installation": ours}])

    await sync_once(settings, store)

    assert state.creates[nmi] == 1 and state.duplicate_equipment() == []
    put = await answer_of(store, nmi, "PUT")
    found = (await store.first_acceptances([nmi]))[nmi]
    assert {key: (a.accepted_at, a.rule, a.transaction_id) for key, a in found.items()} == {
        "A": (datetime(2026, 6, 10, 2, 0, tzinfo=UTC), AcceptanceRule.HELD_AT_AEMO, put["transactionId"]),
        "B": (datetime(2026, 6, 23, 16, 30, tzinfo=UTC), AcceptanceRule.HELD_AT_AEMO, put["transactionId"]),
        "C": (put["answeredAt"], AcceptanceRule.ANSWERED, put["transactionId"]),
    }
    judged = await states(settings, store, date(2026, 7, 1))
    assert judged[(nmi, "A")] == (ComplianceState.MET, None)
    assert judged[(nmi, "B")] == (ComplianceState.LATE, None)
    assert judged[(nmi, "C")] == (ComplianceState.MET, None)  # accepted before it was commissioned
