"""What reconciliation says, as admins read it: counts in the right number."""

from __future__ import annotations

from dersync.mock import Simulator
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import load, nmi_for, record
from tests.reconcile.conftest import run_reconcile


async def test_findings_and_summary_use_singular_and_plural_correctly(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """One differing field "differs", two "differ"; one record compared is "1 record compared"."""
    await load(store, [record(nmi_for(0)), record(nmi_for(1))])
    await sync_once(settings, store)
    simulator.state.tamper(nmi_for(0), "approvedCapacity", 42.0)
    simulator.state.tamper(nmi_for(1), "approvedCapacity", 42.0)
    simulator.state.tamper(nmi_for(1), "exportLimitkW", 4.0)

    report = await run_reconcile(settings, store, repair=False)

    details = {f.nmi: f.detail for f in report.findings}
    assert details == {nmi_for(0): "1 field differs at AEMO", nmi_for(1): "2 fields differ at AEMO"}
    assert report.line().startswith("2 records compared: ") and "; 1 request, " in report.line(), report.line()
