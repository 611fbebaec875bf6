"""The console's pages as HTML (the browser tests drive the same pages in Chromium): what each
shows, that it agrees with the store, and what its forms do."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest

from dersync.aemo.client import AemoClient
from dersync.cli.commands import EXCEPTION_CSV_COLUMNS
from dersync.mock import Simulator
from dersync.reconcile import reconcile
from dersync.store import PartOutcome, RecordOutcome, ValidationException
from dersync.testing import load, nmi_for, record
from dersync.vocabulary import Level, Part, Result
from tests.console.conftest import OPERATOR, VIEWER, SentRequest, Served, Visitor, flagged_store

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def cell(page: str, attribute: str, value: str) -> str:
    found = re.search(rf'<td {attribute}="{re.escape(value)}">([^<]*)</td>', page)
    assert found is not None, (attribute, value)
    return found.group(1).replace(",", "")


def element(page: str, element_id: str) -> str:
    """The text of the element with this id (tags inside dropped)."""
    found = re.search(rf'<(\w+)[^>]*id="{re.escape(element_id)}"[^>]*>(.*?)</\1>', page, re.S)
    assert found is not None, element_id
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(2))).strip()


def nmis_listed(page: str) -> list[str]:
    return re.findall(r'<td class="id"><a href="/nmi/(\d+)">', page)


async def test_the_overview_counts_are_the_stores(served: Served, visitor: Visitor) -> None:
    """Records by state, due, parked and open exceptions by level on the overview equal the
    store's status; top codes and the last passes are listed."""
    nmis = await flagged_store(served.settings, served.store, flagged=4, clean=3)
    await load(served.store, [record(nmi_for(50))])  # pending, due
    await served.store.park(nmis[0], actor="olivia", reason="fix")
    await served.store.redrive(served_selection(nmis[1:3]), actor="olivia")
    status = await served.store.status()
    await visitor.sign_in(*VIEWER)
    _code, page = await visitor.get("/")
    for state, count in status["records"].items():
        assert int(cell(page, "data-state", state)) == count
    for level, count in status["open_exceptions"].items():
        assert int(cell(page, "data-level", level)) == count
    assert int(element(page, "due").replace(",", "")) == status["due"] == 3
    assert int(element(page, "parked").replace(",", "")) == status["parked"] == 1
    assert int(element(page, "records-total").replace(",", "")) == 8
    assert "2023" in page and 'id="sync-passes"' in page and element(page, "token-state") == "ok"


def served_selection(nmis: list[str]):  # type: ignore[no-untyped-def]
    from dersync.store import Selection

    return Selection(nmis=tuple(nmis))


@SQLITE
async def test_the_overview_shows_the_running_pass_live(served: Served, visitor: Visitor,
                                                        simulator: Simulator) -> None:
    """While the daemon reports a pass, the overview's live part shows records done of due,
    requests (from the AEMO client's own counts) against the budget, and asks to be fetched
    again within seconds; when it ends the overview says nothing runs and polls slowly."""
    await visitor.sign_in(*VIEWER)
    served.runtime.live.started("sync")
    await served.client.installation.get(nmi_for(1))  # one request by the daemon's client
    served.runtime.live.progress(3, 10)
    _code, page = await visitor.get("/overview/live")
    assert element(page, "progress") == "3 of 10 due records done"
    assert 'data-poll="2000"' in page and "1 requests" in page and "budget of 6,000" in page
    served.runtime.live.finished("sync")
    _code, page = await visitor.get("/overview/live")
    assert 'id="idle"' in page and 'data-poll="15000"' in page


async def test_the_inbox_filters_pages_newest_first_and_links_each_row(served: Served, visitor: Visitor) -> None:
    """The inbox opens on open exceptions, newest first, paged; level, code, status, NMI prefix
    and age filter it; each row links to its NMI; a bad filter value is a 400 page."""
    nmis = await flagged_store(served.settings, served.store, flagged=12, clean=2)
    await visitor.sign_in(*VIEWER)
    _code, page = await visitor.get("/exceptions?pageSize=5")
    assert element(page, "match-count") == "12" and "page 1 of 3" in page
    first = nmis_listed(page)
    _code, page = await visitor.get("/exceptions?pageSize=5&page=3")
    last = nmis_listed(page)
    assert len(first) == 5 and len(last) == 2 and not set(first) & set(last)
    _code, page = await visitor.get("/exceptions?status=resolved")
    assert 'id="no-match"' in page
    _code, page = await visitor.get(f"/exceptions?level=second&code=2023&nmiPrefix={nmis[11][:-1]}&age=1d")
    assert element(page, "match-count") == "2" and sorted(nmis_listed(page)) == nmis[10:12]  # 800100001x
    status, page = await visitor.get("/exceptions?level=fifth")
    assert status == 400 and "Level must be one of" in element(page, "error")


async def test_the_csv_export_is_every_matching_row_under_the_cli_header(served: Served, visitor: Visitor) -> None:
    """Export CSV streams every exception matching the filter (not one page) under the header of
    `exceptions list --format csv`; text a spreadsheet would run as a formula is defused."""
    await flagged_store(served.settings, served.store, flagged=7)
    await load(served.store, [record(nmi_for(40))])
    formula = ValidationException(Level.LOCAL, "LOCAL", detail="=HYPERLINK(\"http://x\")", field="jobNumber")
    await served.store.record_outcomes([RecordOutcome(nmi_for(40), 1, (PartOutcome(
        Part.INSTALLATION, Result.REJECTED, covered_levels=frozenset({Level.LOCAL}), exceptions=(formula,)),))])
    await visitor.sign_in(*VIEWER)
    _code, text = await visitor.get("/exceptions.csv?pageSize=2&status=open")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0].split(",") == list(EXCEPTION_CSV_COLUMNS)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"open"}
    local = next(r for r in rows if r["level"] == "local")
    assert local["detail"] == "'=HYPERLINK(\"http://x\")"
    _code, text = await visitor.get("/exceptions.csv?level=schema")
    assert text.splitlines() == [",".join(EXCEPTION_CSV_COLUMNS)]


async def test_the_codes_view_counts_each_code_largest_first(served: Served, visitor: Visitor) -> None:
    """Grouped by code: one line per level and code with its count, each linking to the inbox
    and (for an operator) to a re-drive preview of those NMIs."""
    await flagged_store(served.settings, served.store, flagged=5)
    await load(served.store, [record(nmi_for(40))])
    local = ValidationException(Level.LOCAL, "LOCAL", detail="jobNumber is required", field="jobNumber")
    await served.store.record_outcomes([RecordOutcome(nmi_for(40), 1, (PartOutcome(
        Part.INSTALLATION, Result.REJECTED, covered_levels=frozenset({Level.LOCAL}), exceptions=(local,)),))])
    await visitor.sign_in(*OPERATOR)
    _code, page = await visitor.get("/exceptions/codes")
    rows = re.findall(r"<td>(\w+)</td><td class=\"id\">([^<]+)</td><td>[^<]*</td><td class=\"num\">(\d+)</td>",
                      page)
    assert rows == [("second", "2023", "5"), ("local", "LOCAL", "1")]
    links = re.findall(r'href="(/redrive\?[^"]+)"', page)
    assert {frozenset(html.unescape(link).split("?")[1].split("&")) for link in links} == {
        frozenset({"by=filter", "status=open", "level=second", "code=2023"}),
        frozenset({"by=filter", "status=open", "level=local", "code=LOCAL"})}


async def test_the_nmi_page_reads_aemos_copy_side_by_side_with_one_get(
    served: Served, visitor: Visitor, simulator: Simulator
) -> None:
    """On the leader, "read AEMO's installation now" sends one GET through the daemon's client
    and shows every field of the store's record beside AEMO's, the differences (as reconciliation
    finds them) highlighted; the page also lists equipment with both ids, the exceptions with
    their transactionIds, actions and the requests the ledger holds."""
    nmi = (await flagged_store(served.settings, served.store, flagged=1))[0]
    simulator.state.tamper(nmi, "approvedCapacity", 42.0)
    await served.store.append_ledger([SentRequest(nmi, "PUT", f"/installation/{nmi}", 200, "tx-from-ledger")])
    await served.store.park(nmi, actor="olivia", reason="checking the inverter model")
    await visitor.sign_in(*VIEWER)
    _code, page = await visitor.get(f"/nmi/{nmi}")
    assert "checking the inverter model" in element(page, "parked-note")
    assert "tx-from-ledger" in page and "connectionId" in page and "Conditional" in page
    [exception_tx] = re.findall(r'<td class="id">([0-9a-f-]{36})</td>', page.split('id="nmi-exceptions"')[1])[:1]
    assert exception_tx in (await served.store.list_exceptions(nmi=nmi))[0]["transactionId"]

    simulator.state.reset_counters()
    _code, page = await visitor.get(f"/nmi/{nmi}")
    status, page, _ = await visitor.post(f"/nmi/{nmi}/aemo", {"part": "installation"}, follow=True)
    assert status == 200 and element(page, "diff-count") == "1"
    differing = re.findall(r'<tr class="differs\s*"><td class="path">([^<]+)</td><td>([^<]*)</td><td>([^<]*)</td>',
                           page)
    assert differing == [("approvedCapacity", "10.0", "42.0")]
    assert f"acConnections[nspConnectionId=C-{nmi}-1].details.modelNumber" in page
    assert [(r.method, r.route) for r in simulator.state.request_log if r.route != "oauth_token"] == [
        ("GET", "installation_get")]


@SQLITE
@pytest.mark.parametrize("console_role", ["standby"])
async def test_a_standby_says_it_cannot_read_aemo_and_shows_the_last_reconciliation(
    served: Served, visitor: Visitor, simulator: Simulator
) -> None:
    """On a standby the read sends nothing (the sender lease's guard refuses) and the page shows
    the last reconciliation's findings for the NMI, with their time."""
    nmi = (await flagged_store(served.settings, served.store, flagged=1))[0]
    simulator.state.tamper(nmi, "approvedCapacity", 42.0)
    async with AemoClient(served.settings) as leader:
        await reconcile(served.settings, served.store, leader, repair=False)
    simulator.state.reset_counters()
    await visitor.sign_in(*OPERATOR)
    await visitor.get(f"/nmi/{nmi}")
    _status, page, _ = await visitor.post(f"/nmi/{nmi}/aemo", {"part": "installation"}, follow=True)
    assert "not the leader (role standby)" in element(page, "aemo-note")
    assert "From the last reconciliation" in element(page, "last-reconciliation")
    assert "approvedCapacity" in page and "42.0" in page
    assert simulator.state.request_log == type(simulator.state.request_log)(maxlen=20_000)


async def test_drift_lists_the_latest_findings_by_kind_with_links(served: Served, visitor: Visitor,
                                                                   simulator: Simulator) -> None:
    """The drift page lists the latest reconciliation's findings, filterable by kind, each NMI a
    link to its page; an unknown kind is a 400."""
    nmis = await flagged_store(served.settings, served.store, flagged=2, clean=2)
    simulator.state.tamper(nmi_for(3), "approvedCapacity", 42.0)
    async with AemoClient(served.settings) as client:
        await reconcile(served.settings, served.store, client, repair=False)
    await visitor.sign_in(*VIEWER)
    _code, page = await visitor.get("/drift?kind=different_at_aemo")
    assert nmis_listed(page) == [nmi_for(3)] and "approvedCapacity" in page
    _code, page = await visitor.get("/drift?kind=conditional_at_aemo")
    assert nmis_listed(page) == nmis
    status, _page = await visitor.get("/drift?kind=everything")
    assert status == 400


async def test_a_viewer_sees_no_actions_and_cannot_post_them(served: Served, visitor: Visitor) -> None:
    """A viewer's NMI page and inbox offer no re-drive, park or unpark; posting the forms anyway
    (with a valid token) is refused with 403 and changes nothing."""
    nmi = (await flagged_store(served.settings, served.store, flagged=1))[0]
    await visitor.sign_in(*VIEWER)
    _code, page = await visitor.get(f"/nmi/{nmi}")
    assert 'id="park"' not in page and 'id="redrive"' not in page and "reads only" in page
    _code, inbox = await visitor.get("/exceptions")
    assert 'id="redrive-matching"' not in inbox and 'form="selected"' not in inbox
    for path, fields in ((f"/nmi/{nmi}/park", {"reason": "x"}), (f"/nmi/{nmi}/redrive", {}),
                         ("/redrive", {"nmi": nmi})):
        status, page, _ = await visitor.post(path, fields)
        assert status == 403 and "needs role operator" in element(page, "error"), path
    assert await served.store.recent_actions() == [] and (await served.store.status())["parked"] == 0


async def test_park_redrive_and_unpark_from_the_nmi_page(served: Served, visitor: Visitor) -> None:
    """An operator parks with a reason (required), re-drives and unparks from the NMI page; each
    answers with the page saying what happened, and the actions are listed with who and why."""
    nmi = (await flagged_store(served.settings, served.store, flagged=1))[0]
    await visitor.sign_in(*OPERATOR)
    await visitor.get(f"/nmi/{nmi}")
    status, page, _ = await visitor.post(f"/nmi/{nmi}/park", {"reason": ""}, follow=True)
    assert status == 400 and "reason is required" in element(page, "message")
    status, page, _ = await visitor.post(f"/nmi/{nmi}/park", {"reason": "new inverter on order"}, follow=True)
    assert status == 200 and "Parked" in element(page, "done") and 'id="parked-badge"' in page
    status, page, _ = await visitor.post(f"/nmi/{nmi}/redrive", {"reason": "model approved"}, follow=True)
    assert "Re-driven" in element(page, "done") and 'id="due-badge"' in page
    assert await served.store.count_due() == 0  # parked: due, but waiting
    status, page, _ = await visitor.post(f"/nmi/{nmi}/unpark", {"reason": "inverter fitted"}, follow=True)
    assert "Unparked" in element(page, "done") and 'id="parked-badge"' not in page
    assert await served.store.count_due() == 1 and len(served.passes_asked) == 2
    actions = page.split('id="actions"')[1].split("</table>")[0]
    assert re.findall(r"<td>(olivia)</td><td>(\w+)", actions) == [("olivia", "unpark"), ("olivia", "redrive"),
                                                                   ("olivia", "park")]
    assert "new inverter on order" in actions and "inverter fitted" in actions


async def test_a_bulk_redrive_is_previewed_then_confirmed(served: Served, visitor: Visitor) -> None:
    """Re-driving every NMI matching a filter first shows a paged preview (changing nothing);
    confirming acts on exactly the previewed NMIs and shows the action; a confirmation whose
    selection changed meanwhile is refused with the new preview."""
    nmis = await flagged_store(served.settings, served.store, flagged=105, clean=2)
    await visitor.sign_in(*OPERATOR)
    _code, page = await visitor.get("/redrive?by=filter&level=second&code=2023&status=open")
    assert element(page, "preview-count") == "105 NMIs" and "page 1 of 2" in page and len(nmis_listed(page)) == 100
    assert await served.store.count_due() == 0
    _code, page = await visitor.get("/redrive?by=filter&level=second&code=2023&status=open&page=2")
    assert nmis_listed(page) == nmis[100:]
    expect = re.search(r'name="expect" value="([0-9a-f]+)"', page)
    assert expect is not None

    await flagged_store(served.settings, served.store, flagged=106)  # one more flagged meanwhile
    fields = [("by", "filter"), ("level", "second"), ("code", "2023"), ("status", "open"),
              ("expect", expect.group(1)), ("reason", "AEMO approved the model")]
    status, page, _ = await visitor.post("/redrive", fields)
    assert status == 409 and "selection changed" in element(page, "message")
    assert element(page, "preview-count") == "106 NMIs" and await served.store.count_due() == 0

    fresh = re.search(r'name="expect" value="([0-9a-f]+)"', page)
    assert fresh is not None
    fields[4] = ("expect", fresh.group(1))
    status, page, location = await visitor.post("/redrive", fields)
    assert status == 303 and location is not None and location.startswith("/activity?done=redrive")
    assert await served.store.count_due() == 106 and served.passes_asked == [True]
    _code, page = await visitor.get(location)
    assert "Re-drive recorded" in element(page, "done") and "AEMO approved the model" in page
