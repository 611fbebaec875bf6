"""The submission ledger as sync passes fill it, on a hostile day: every request the simulator
received is one row with its transactionId, every request that got no answer is a row too (it
may have landed), and writes keep the body exactly as sent."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from dersync.aemo.client import AemoClient
from dersync.mock import Simulator, SimulatorConfig
from dersync.settings import Enumerations, Settings
from dersync.store import Store
from dersync.sync import SyncEngine
from dersync.testing import connection, installation, load, nmi_for, record
from tests.conftest import PARTICIPANT

RECORDS = 40
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@pytest.fixture
def sim_config() -> SimulatorConfig:
    """AEMO fails a third of the calls: 500s, 503s, connections dropped before and after the
    request was applied."""
    return SimulatorConfig(participant_id=PARTICIPANT, seed=11, fault_rate=0.33,
                           fault_kinds=("500", "503", "drop", "drop_after_apply"))


async def ledger(store: Store) -> list[dict[str, Any]]:
    return [row async for batch in store.ledger_between(*EVER) for row in batch]


async def test_one_row_per_request_sent_answered_or_not_with_matching_transaction_ids(
    make_settings: Any, store: Store, simulator: Simulator
) -> None:
    """Passes under faults, and one pass with AEMO unreachable (connections refused), leave one
    ledger row per request the simulator answered (same transactionIds, same count), one per
    request it received and dropped, and one per request that never reached it; every row names
    its pass, and every write's stored body hashes to its bodySha256."""
    settings: Settings = make_settings(max_retries=2)
    await load(store, [record(nmi_for(i)) for i in range(RECORDS)])
    async with AemoClient(settings) as client:
        await client.check_credentials()  # a token in hand: the outage below refuses API calls only
        for _ in range(8):
            await SyncEngine(settings, store, client).run_pass()
            if (await store.status())["due"] == 0:
                break
        await load(store, [{"installation": installation(nmi_for(i), approvedCapacity=12.0)} for i in range(5)])
        await simulator.stop()
        await SyncEngine(settings, store, client).run_pass()
        await simulator.start()
        simulator.config.fault_rate = 0.0
        await SyncEngine(settings, store, client).run_pass()
    assert (await store.status())["due"] == 0

    rows = await ledger(store)
    served = [s for s in simulator.state.request_log if s.route != "oauth_token"]
    answered = Counter(s.transaction_id for s in served if s.status != 0)
    assert Counter(r["transactionId"] for r in rows if r["status"] is not None) == answered
    no_answer = [r for r in rows if r["status"] is None]
    refused = [r for r in no_answer if r["error"].startswith("cannot connect")]
    dropped = [r for r in no_answer if not r["error"].startswith("cannot connect")]
    assert refused, "the outage was never met"
    assert simulator.state.faults["drop"] and simulator.state.faults["drop_after_apply"]
    assert len(dropped) == sum(1 for s in served if s.status == 0)
    assert len(rows) == len(served) + len(refused)
    assert all(r["passId"] is not None for r in rows)
    for row in rows:
        found = await store.ledger_body(row["id"])
        assert found is not None
        _entry, body = found
        if row["method"] == "GET":
            assert body is None and row["bodySha256"] is None
        else:
            assert body is not None and hashlib.sha256(body).hexdigest() == row["bodySha256"]
            assert json.loads(body)  # the JSON that went out


async def test_the_ledger_shows_what_was_sent_for_a_record_rejected_then_fixed(
    make_settings: Any, store: Store, simulator: Simulator
) -> None:
    """For one NMI: the write AEMO rejected (first level, with its codes and transactionId), then
    the accepted one, newest first, each with the body that went out."""
    from dersync.sync import sync_once

    enumerations = Enumerations()
    enumerations.equipment_types.append("Fuel Cell")  # allowed locally, unknown to AEMO
    settings = make_settings(enumerations=enumerations)
    nmi = nmi_for(3)
    refused = installation(nmi, connections=[connection(f"C-{nmi}-1", equipment_type="Fuel Cell")])
    await load(store, [{**record(nmi), "installation": refused}])
    await sync_once(settings, store)
    await load(store, [{"installation": installation(nmi)}])
    await sync_once(settings, store)

    writes = [r for r in await store.ledger_for_nmi(nmi) if r["method"] != "GET" and r["part"] == "installation"]
    assert [(w["method"], w["status"]) for w in writes] == [("POST", 201), ("POST", 422)]
    rejected = writes[-1]
    assert rejected["codes"] == ["1006"] and rejected["transactionId"]
    entry = await store.ledger_body(rejected["id"])
    assert entry is not None and entry[1] is not None
    assert json.loads(entry[1])["data"]["acConnections"][0]["equipmentType"] == "Fuel Cell"
