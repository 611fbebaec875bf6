"""`dersync history`, `dersync ledger show` and `dersync ledger export` as an operator or an
auditor runs them: real processes against the simulator and the store."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from dersync.aemo.sent import SentBody, SentRequest
from dersync.mock import Simulator
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import installation, load, nmi_for, record
from tests.cli.conftest import DersyncProcess

PINNED = ["id", "sentAt", "answeredAt", "nmi", "part", "method", "path", "status", "transactionId", "codes",
          "attempt", "passId", "bodySha256"]


async def synced_twice(settings: Settings, store: Store, nmi: str) -> None:
    """A record created, then changed and updated: two versions at AEMO, several requests."""
    await load(store, [record(nmi)])
    await sync_once(settings, store)
    await load(store, [{"installation": installation(nmi, approvedCapacity=12.0)}])
    await sync_once(settings, store)


async def test_history_is_the_nmis_timeline_newest_first_and_aemo_adds_its_versions(
    settings: Settings, store: Store, simulator: Simulator, dersync: DersyncProcess
) -> None:
    """`history NMI` lists every request sent about the NMI, newest first, with AEMO's answers;
    `--aemo` adds AEMO's own versions (one GET, which is itself in the ledger afterwards)."""
    nmi = nmi_for(1)
    await synced_twice(settings, store, nmi)
    ours = await store.ledger_for_nmi(nmi)

    ran = await dersync("history", nmi, "--format", "json")
    assert ran.returncode == 0, ran.stderr
    rows = json.loads(ran.stdout)
    assert [r["ledgerId"] for r in rows] == [r["id"] for r in ours]
    assert {r["source"] for r in rows} == {"dersync"}
    assert [r["method"] for r in rows if r["path"].startswith("/installation/")] == ["PUT"]

    ran = await dersync("history", nmi, "--aemo", "--format", "json")
    assert ran.returncode == 0, ran.stderr
    rows = json.loads(ran.stdout)
    versions = [r for r in rows if r["source"] == "aemo"]
    assert len(versions) == len(simulator.state.history[nmi]) == 2
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)
    after = await store.ledger_for_nmi(nmi)
    assert after[0]["path"] == f"/installation/{nmi}/history" and after[0]["status"] == 200

    ran = await dersync("history", nmi, "--format", "csv")
    header = next(csv.reader(io.StringIO(ran.stdout)))
    assert header == ["time", "source", "ledgerId", "method", "path", "status", "transactionId", "codes", "detail"]


async def test_history_shows_what_people_did_to_the_nmi(
    settings: Settings, store: Store, dersync: DersyncProcess
) -> None:
    """A park and an unpark (from the CLI here; the console logs the same way) are in the NMI's
    history beside the requests, with who did it and why, newest first."""
    nmi = nmi_for(5)
    await synced_twice(settings, store, nmi)
    assert (await dersync("park", nmi, "--reason", "serials being fixed")).returncode == 0
    assert (await dersync("unpark", nmi)).returncode == 0
    ran = await dersync("history", nmi, "--format", "json")
    assert ran.returncode == 0, ran.stderr
    rows = json.loads(ran.stdout)
    people = [r for r in rows if r["source"] == "person"]
    assert [r["detail"].split(" by ")[0] for r in people] == ["unpark", "park"]
    assert people[1]["detail"].endswith(": serials being fixed")
    assert rows[0]["source"] == "person"  # the newest thing that happened to it
    assert len(rows) == len(people) + len(await store.ledger_for_nmi(nmi))


async def test_ledger_show_prints_the_body_that_was_sent(
    settings: Settings, store: Store, dersync: DersyncProcess
) -> None:
    """`ledger show ID` prints a write's body as AEMO received it; a read (no body) or an
    unknown id is one line on stderr and exit 1."""
    nmi = nmi_for(2)
    await synced_twice(settings, store, nmi)
    put = next(r for r in await store.ledger_for_nmi(nmi) if r["method"] == "PUT" and r["part"] == "installation")
    ran = await dersync("ledger", "show", str(put["id"]))
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["data"]["approvedCapacity"] == 12.0

    read = next(r for r in await store.ledger_for_nmi(nmi) if r["method"] == "GET") if any(
        r["method"] == "GET" for r in await store.ledger_for_nmi(nmi)) else None
    if read is not None:
        ran = await dersync("ledger", "show", str(read["id"]))
        assert ran.returncode == 1 and "has no body: a read carries no body" in ran.stderr
    ran = await dersync("ledger", "show", "999999")
    assert ran.returncode == 1 and ran.stderr.strip().endswith("no ledger entry 999999"), ran.stderr


async def test_ledger_export_streams_a_period_with_the_pinned_fields(
    store: Store, dersync: DersyncProcess
) -> None:
    """`ledger export --from --to` prints every request sent in those days (in the operator's
    zone, both included) and nothing else, as JSON lines or CSV with the pinned fields first."""
    perth_midnight = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)  # 3 November 00:00 in Perth
    body = SentBody.of(b'{"data": {"nmi": "8001000009"}}', compress=True)

    def at(moment: datetime, nmi: str) -> SentRequest:
        return SentRequest(sent_at=moment, answered_at=moment, nmi=nmi, api="installation", method="PUT",
                           path=f"/installation/{nmi}", status=422, error=None, transaction_id=f"t-{nmi}",
                           codes=("1006",), attempt=1, pass_id=None, body_sha256=body.sha256,
                           body_gzip=body.gzipped)

    await store.append_ledger([
        at(perth_midnight - timedelta(seconds=1), "8001000008"),  # 2 November, Perth
        at(perth_midnight, "8001000009"),
        at(perth_midnight + timedelta(days=2, hours=23, minutes=59), "8001000010"),  # 5 November, 23:59
        at(perth_midnight + timedelta(days=3), "8001000011"),  # 6 November
    ])
    ran = await dersync("ledger", "export", "--from", "2026-11-03", "--to", "2026-11-05")
    assert ran.returncode == 0, ran.stderr
    rows = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [r["nmi"] for r in rows] == ["8001000009", "8001000010"]
    assert list(rows[0])[:len(PINNED)] == PINNED
    assert rows[0]["sentAt"] == "2026-11-03T00:00:00+08:00" and rows[0]["codes"] == ["1006"]

    ran = await dersync("ledger", "export", "--from", "2026-11-03", "--to", "2026-11-05", "--format", "csv")
    table = list(csv.reader(io.StringIO(ran.stdout)))
    assert table[0][:len(PINNED)] == PINNED and len(table) == 3
    ran = await dersync("ledger", "export", "--from", "2026-11-06", "--to", "2026-11-03")
    assert ran.returncode == 2 and "--to is before --from" in ran.stderr
