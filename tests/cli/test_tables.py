"""Tables for people: at 80 columns (a small terminal, or a pipe) identifiers stay whole on one
line, so an operator can copy a transactionId for AEMO support or an NMI into a query."""

from __future__ import annotations

import pytest

from dersync.aemo.client import AemoClient
from dersync.mock import Simulator
from dersync.reconcile import reconcile
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import connection, device, installation, load, nmi_details, nmi_for, record
from tests.cli.conftest import DersyncProcess

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

IDENTIFIERS = ("nmi", "code", "transactionId", "nspConnectionId", "nspDeviceId")


def on_one_line(value: str, output: str) -> bool:
    return any(value in line for line in output.splitlines())


async def prepared_store(settings: Settings, store: Store, simulator: Simulator) -> None:
    """Second-level exceptions (each with a transactionId and equipment ids), local ones with
    long details, drift, and a due record for the dry run."""
    flagged = [nmi_for(i) for i in range(2, 6)]
    await load(store, [record(nmi_for(0)), record(nmi_for(1))] + [
        {"nmiDetails": nmi_details(nmi), "installation": installation(nmi, connections=[connection(
            f"C-{nmi}-1", maker=("Acme Solar", "X-1"),
            devices=[device(f"C-{nmi}-1-BATTERY-STORAGE-D1", maker=("Acme Storage", "Y-2"))])])}
        for nmi in flagged
    ] + [{"nmiDetails": nmi_details(nmi_for(7)), "installation": installation(nmi_for(7), approvedCapacity="ten kW",
                                                                                 exportLimitkW="five")}])
    await sync_once(settings, store)
    simulator.state.tamper(nmi_for(0), "approvedCapacity", 42.0)
    async with AemoClient(settings) as client:
        await reconcile(settings, store, client, repair=False)
    await load(store, [{"installation": installation(nmi_for(1), approvedCapacity=11.0)}])


async def test_identifiers_stay_whole_in_tables_at_80_columns(
    settings: Settings, store: Store, simulator: Simulator, dersync: DersyncProcess
) -> None:
    """With COLUMNS=80, `exceptions list` shows every NMI, code, transactionId, nspConnectionId and
    nspDeviceId whole on one line (free text wraps instead); `drift list` and `sync --dry-run`
    keep NMIs and kinds whole; no line is wider than 80."""
    await prepared_store(settings, store, simulator)
    exceptions = await store.list_exceptions()
    assert len([e for e in exceptions if e["transactionId"]]) >= 4 and any(e["nspDeviceId"] for e in exceptions)

    shown = await dersync("exceptions", "list", COLUMNS="80")
    assert shown.returncode == 0, shown.stderr
    for exception in exceptions:
        for name in IDENTIFIERS:
            if exception[name]:
                assert on_one_line(exception[name], shown.stdout), (name, exception[name], shown.stdout)
    _last, drift = await store.latest_drift()
    listed = await dersync("drift", "list", COLUMNS="80")
    assert drift and all(on_one_line(f["nmi"], listed.stdout) and on_one_line(f["kind"], listed.stdout)
                         for f in drift), listed.stdout
    planned = await dersync("sync", "--dry-run", COLUMNS="80")
    assert on_one_line(nmi_for(1), planned.stdout), planned.stdout
    for output in (shown.stdout, listed.stdout, planned.stdout):
        assert max(len(line) for line in output.splitlines()) <= 80


async def test_a_wide_terminal_gets_one_row_per_exception(
    settings: Settings, store: Store, simulator: Simulator, dersync: DersyncProcess
) -> None:
    """Where the identifiers fit (COLUMNS=250), `exceptions list` is one table, a row per
    exception, still with every transactionId whole."""
    await prepared_store(settings, store, simulator)
    exceptions = await store.list_exceptions()

    shown = await dersync("exceptions", "list", COLUMNS="250")

    rows = [line for line in shown.stdout.splitlines() if any(e["transactionId"] and e["transactionId"] in line
                                                              for e in exceptions)]
    assert len(rows) == len([e for e in exceptions if e["transactionId"]])
    assert all(line.count("┃") + line.count("│") > 5 for line in rows), shown.stdout
