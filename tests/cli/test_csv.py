"""CSV output has one header per command, whatever the rows: a script reading `exceptions list`
or `drift list` finds the same columns when nothing matched, when one row did, and when many did."""

from __future__ import annotations

import csv
import io

import pytest

from dersync.mock import Simulator
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import installation, load, nmi_details, nmi_for, record
from tests.cli.conftest import DersyncProcess

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

EXCEPTIONS_CSV = ["nmi", "part", "level", "code", "title", "detail", "field", "transactionId", "nspConnectionId",
                  "connectionId", "nspDeviceId", "deviceId", "status", "firstSeen", "lastSeen", "resolvedAt"]
DRIFT_LIST_CSV = ["nmi", "kind", "part", "fields", "detail", "found_at", "reconcile_pass_id"]
RECONCILE_CSV = ["nmi", "kind", "part", "fields", "detail", "repairable"]
DRY_RUN_CSV = ["nmi", "action", "nmi_details", "installation", "requests", "diff", "problems"]


def header_and_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


async def test_each_command_prints_its_own_fixed_csv_header(
    settings: Settings, store: Store, simulator: Simulator, dersync: DersyncProcess
) -> None:
    """`exceptions list`, `drift list`, `reconcile` and `sync --dry-run` print the same CSV header
    with no rows as with rows (exceptions and drift list: every field, as in JSON)."""
    invalid = nmi_for(1)
    await load(store, [record(nmi_for(0)), {"nmiDetails": nmi_details(invalid),
                                            "installation": installation(invalid, approvedCapacity="x")}])

    plan_header, planned = header_and_rows((await dersync("sync", "--dry-run", "--format", "csv")).stdout)
    assert plan_header == DRY_RUN_CSV and len(planned) == 2
    await sync_once(settings, store)
    empty_plan_header, _ = header_and_rows((await dersync("sync", "--dry-run", "--format", "csv")).stdout)
    assert empty_plan_header == DRY_RUN_CSV

    for nmi, count in ((nmi_for(9), 0), (invalid, 1)):
        header, rows = header_and_rows((await dersync("exceptions", "list", "--nmi", nmi, "--format", "csv")).stdout)
        assert (header, len(rows)) == (EXCEPTIONS_CSV, count)

    header, rows = header_and_rows((await dersync("drift", "list", "--format", "csv")).stdout)
    assert (header, rows) == (DRIFT_LIST_CSV, [])  # no reconciliation yet
    header, rows = header_and_rows((await dersync("reconcile", "--no-repair", "--format", "csv")).stdout)
    assert (header, rows) == (RECONCILE_CSV, [])
    header, rows = header_and_rows((await dersync("drift", "list", "--format", "csv")).stdout)
    assert (header, rows) == (DRIFT_LIST_CSV, [])  # a reconciliation that found nothing

    simulator.state.tamper(nmi_for(0), "approvedCapacity", 42.0)
    header, rows = header_and_rows((await dersync("reconcile", "--no-repair", "--format", "csv")).stdout)
    assert header == RECONCILE_CSV and [(r["nmi"], r["kind"]) for r in rows] == [(nmi_for(0), "different_at_aemo")]
    header, rows = header_and_rows((await dersync("drift", "list", "--format", "csv")).stdout)
    assert header == DRIFT_LIST_CSV and [(r["nmi"], r["kind"]) for r in rows] == [(nmi_for(0), "different_at_aemo")]
