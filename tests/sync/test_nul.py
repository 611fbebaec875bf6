"""A NUL character in text AEMO keeps and answers with (PostgreSQL's text cannot hold one)."""

from __future__ import annotations

from dersync.mock import Simulator
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import load, nmi_for, read_back, record


async def test_a_status_with_a_nul_character_is_sent_and_its_outcome_recorded(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """A connection status holding a NUL is valid JSON text that AEMO accepts and echoes back;
    the outcome is recorded on both stores (the echoed status is kept with U+FFFD for the NUL)
    and the record is synced exactly as stored."""
    odd = record(nmi_for(1))
    odd["installation"]["acConnections"][0]["status"] = "Active\x00"
    await load(store, [odd])
    summary = await sync_once(settings, store)
    assert summary.synced == 1, summary
    assert (await read_back(store, simulator.state)).ok
    connection = next(e for e in (await store.load_equipment([nmi_for(1)]))[nmi_for(1)] if not e.nsp_device_id)
    assert connection.status == "Active\ufffd"
