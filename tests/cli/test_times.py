"""Every time a command prints is in the operator's zone (`DERSYNC_TIMEZONE`, default
Australia/Perth) with its offset, the same way in tables, JSON and CSV."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from dersync.aemo.client import AemoClient
from dersync.mock import Simulator
from dersync.reconcile import reconcile
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import installation, load, nmi_details, nmi_for, record
from tests.cli.conftest import DersyncProcess

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                                     indirect=True)

#: Anything that looks like a date and a time, however written.
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
OUTPUTS = (["status"], ["status", "--format", "json"], ["exceptions", "list"],
           ["exceptions", "list", "--format", "json"], ["exceptions", "list", "--format", "csv"],
           ["drift", "list"], ["drift", "list", "--format", "json"], ["drift", "list", "--format", "csv"])


async def prepared_store(settings: Settings, store: Store, simulator: Simulator) -> None:
    """A sync pass with a local exception, and a reconciliation with a finding."""
    invalid = nmi_for(1)
    await load(store, [record(nmi_for(0)), {"nmiDetails": nmi_details(invalid),
                                            "installation": installation(invalid, approvedCapacity="x")}])
    await sync_once(settings, store)
    simulator.state.tamper(nmi_for(0), "approvedCapacity", 42.0)
    async with AemoClient(settings) as client:
        await reconcile(settings, store, client, repair=False)


@pytest.mark.parametrize(("zone", "offset"), [(None, "+08:00"), ("Asia/Kolkata", "+05:30")])
async def test_every_printed_time_is_in_the_operators_zone_with_its_offset(
    settings: Settings, store: Store, simulator: Simulator, dersync: DersyncProcess, zone: str | None, offset: str
) -> None:
    """`status`, `exceptions list` and `drift list`, as table, JSON and CSV, print every time as
    `YYYY-MM-DDTHH:MM:SS+HH:MM` in DERSYNC_TIMEZONE (Perth when unset), and it is the stored moment."""
    await prepared_store(settings, store, simulator)
    variables = {"COLUMNS": "300"} | ({"DERSYNC_TIMEZONE": zone} if zone else {})
    for args in OUTPUTS:
        ran = await dersync(*args, **variables)
        assert ran.returncode == 0, (args, ran.stderr)
        times = [match.group(0) for match in TIMESTAMP.finditer(ran.stdout)]
        assert times, (args, ran.stdout)
        for text in times:
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}" + re.escape(offset), text), (args, text)

    shown = json.loads((await dersync("status", "--format", "json", **variables)).stdout)
    started = (await store.status())["last_sync"]["started_at"]
    started = (started if started.tzinfo else started.replace(tzinfo=UTC)).replace(microsecond=0)
    assert datetime.fromisoformat(shown["last_sync"]["started_at"]) == started
    assert datetime.fromisoformat(shown["last_sync"]["started_at"]).utcoffset() == started.astimezone(
        ZoneInfo(zone or "Australia/Perth")).utcoffset()


async def test_an_unknown_time_zone_is_a_configuration_error(dersync: DersyncProcess, store: Store) -> None:
    """A DERSYNC_TIMEZONE that names no zone is one line naming the setting, exit 2."""
    ran = await dersync("status", DERSYNC_TIMEZONE="Perth/Nowhere")
    assert ran.returncode == 2
    assert ran.stderr.splitlines() == ["dersync: configuration: DERSYNC_TIMEZONE: unknown time zone 'Perth/Nowhere' "
                                       "(an IANA name such as 'Australia/Perth')"]
