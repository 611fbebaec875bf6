"""The JSON API under /api/v1/ as scripts use it: every endpoint, both roles, missing and wrong
credentials, bad input, and a re-drive that the next sync pass sends once per NMI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from dersync.cli.output import in_zone
from dersync.mock import Simulator
from dersync.store import ExceptionFilter
from dersync.store.tables import validation_exception
from dersync.sync import sync_once
from dersync.testing import load, nmi_for, read_back, record
from tests.console.conftest import OPERATOR, UNLISTED, VIEWER, SentRequest, Served, Visitor, api, flagged_store

ENDPOINTS = [("GET", "/api/v1/summary"), ("GET", "/api/v1/exceptions"), ("GET", f"/api/v1/nmis/{nmi_for(0)}"),
             ("POST", "/api/v1/redrive"), ("POST", f"/api/v1/nmis/{nmi_for(0)}/park"),
             ("POST", f"/api/v1/nmis/{nmi_for(0)}/unpark")]


def as_cli_json(value: Any, served: Served) -> Any:
    """`value` as `--format json` prints it (times in the operator's zone)."""
    return json.loads(json.dumps(in_zone(value, served.settings.zone), default=str))


async def test_every_endpoint_needs_credentials(served: Served) -> None:
    """Without credentials every endpoint answers 401 with a one-line error; a wrong password
    and an unknown user are 401 too, on reads and writes alike; nothing is changed."""
    await load(served.store, [record(nmi_for(0))])
    for method, path in ENDPOINTS:
        body = {"reason": "x"} if method == "POST" else None
        status, answer = await api(served, method, path, auth=None, body=body)
        assert status == 401 and set(answer) == {"error"} and "\n" not in answer["error"], (path, answer)
    for method, path in (ENDPOINTS[0], ENDPOINTS[4]):  # within the sign-in throttle's 5 failures
        body = {"reason": "x"} if method == "POST" else None
        for wrong in ((OPERATOR[0], "not-the-password"), ("nobody", "not-the-password")):
            status, answer = await api(served, method, path, auth=wrong, body=body)
            assert status == 401 and answer == {"error": "wrong user name or password"}, (path, wrong)
    assert (await served.store.status())["parked"] == 0 and await served.store.recent_actions() == []


async def test_summary_is_the_status_command_json(served: Served, simulator: Simulator) -> None:
    """GET /api/v1/summary answers what `dersync status --format json` prints, for both roles."""
    await flagged_store(served.settings, served.store, flagged=3, clean=2)
    expected = as_cli_json(await served.store.status(), served)
    for user in (OPERATOR, VIEWER):
        status, answer = await api(served, "GET", "/api/v1/summary", auth=user)
        assert status == 200 and answer == expected
    assert answer["records"]["synced"] == 5 and answer["open_exceptions"]["second"] == 3 and answer["parked"] == 0


async def test_exceptions_are_the_cli_items_newest_first_with_paging_and_filters(served: Served) -> None:
    """Items carry exactly the fields of `exceptions list --format json`, newest first, with
    page, pageSize, total and pages; level, code, status, nmi, nmiPrefix and age filter."""
    nmis = await flagged_store(served.settings, served.store, flagged=7)
    # Spread first-seen times so that newest first is visible: NMI i first seen 6.5 i days ago.
    async with served.store.engine.begin() as connection:
        for i, nmi in enumerate(nmis):
            await connection.execute(update(validation_exception).where(validation_exception.c.nmi == nmi)
                                     .values(first_seen_at=datetime.now(UTC) - timedelta(days=i * 6.5)))
    status, answer = await api(served, "GET", "/api/v1/exceptions?pageSize=3&page=2", auth=VIEWER)
    assert status == 200
    assert (answer["page"], answer["pageSize"], answer["total"], answer["pages"]) == (2, 3, 7, 3)
    assert [item["nmi"] for item in answer["items"]] == nmis[3:6]
    cli_items = as_cli_json(await served.store.list_exceptions(nmi=nmis[3]), served)
    assert answer["items"][0] == cli_items[0]

    async def nmis_for(query: str) -> list[str]:
        status, found = await api(served, "GET", "/api/v1/exceptions?" + query)
        assert status == 200, found
        return [item["nmi"] for item in found["items"]]

    assert await nmis_for("level=second&code=2023&status=open") == nmis
    assert await nmis_for("level=first") == [] and await nmis_for("status=resolved") == []
    assert await nmis_for(f"nmi={nmis[2]}") == [nmis[2]]
    assert await nmis_for(f"nmiPrefix={nmis[1][:-1]}") == nmis  # 800100000 prefixes all seven
    assert await nmis_for("age=1d") == [nmis[0]]
    assert await nmis_for("age=7d") == nmis[:2]
    assert await nmis_for("age=30d") == nmis[:5]
    assert await nmis_for("age=older") == nmis[5:]
    for bad in ("level=third", "status=closed", "age=2d", "page=0", "pageSize=501", "page=x", "code=a%20b",
                "colour=red"):
        status, found = await api(served, "GET", "/api/v1/exceptions?" + bad)
        assert status == 400 and set(found) == {"error"} and "\n" not in found["error"], (bad, found)


async def test_nmi_answers_record_state_ids_exceptions_actions_and_requests(served: Served) -> None:
    """GET /api/v1/nmis/{nmi}: the store's record, sync state, equipment with both ids and stage,
    exceptions with transactionIds, actions, and the requests the ledger holds; 404 for an NMI
    the store does not hold."""
    nmi = (await flagged_store(served.settings, served.store, flagged=1))[0]
    await served.store.park(nmi, actor="olivia", reason="inverter model being checked")
    await served.store.append_ledger([SentRequest(nmi, "PUT", f"/installation/{nmi}", 200, "tx-ledger-1")])
    status, answer = await api(served, "GET", f"/api/v1/nmis/{nmi}", auth=VIEWER)
    assert status == 200
    assert answer["record"]["installation"]["acConnections"][0]["details"]["modelNumber"] == UNLISTED[1]
    assert answer["sync"]["state"] == "synced" and answer["sync"]["lastTransactionId"]
    assert answer["parked"]["by"] == "olivia" and answer["parked"]["reason"] == "inverter model being checked"
    connection = next(e for e in answer["equipment"] if e["kind"] == "connection")
    assert connection["nspConnectionId"] == f"C-{nmi}-1" and connection["aemoId"] > 0
    assert connection["installationStage"] == "Conditional"
    [exception] = answer["exceptions"]
    assert exception["code"] == "2023" and exception["transactionId"] and exception["status"] == "open"
    assert [a["kind"] for a in answer["actions"]] == ["park"]
    ledger = await served.store.ledger_for_nmi(nmi)  # the sync pass's requests, and the one added
    assert [(r["method"], r["transactionId"]) for r in answer["requests"]] == [
        (r["method"], r["transactionId"]) for r in ledger]
    assert (answer["requests"][0]["method"], answer["requests"][0]["transactionId"]) == ("PUT", "tx-ledger-1")
    status, answer = await api(served, "GET", f"/api/v1/nmis/{nmi_for(99)}")
    assert status == 404 and "no record" in answer["error"]


async def test_a_viewer_reads_but_every_write_is_403_and_changes_nothing(served: Served) -> None:
    """A viewer's park, unpark and re-drive (preview included) answer 403; the store is as it was."""
    await load(served.store, [record(nmi_for(0))])
    for path, body in ((f"/api/v1/nmis/{nmi_for(0)}/park", {"reason": "x"}), (f"/api/v1/nmis/{nmi_for(0)}/unpark", {}),
                       ("/api/v1/redrive", {"nmis": [nmi_for(0)], "preview": True}),
                       ("/api/v1/redrive", {"nmis": [nmi_for(0)], "preview": False})):
        status, answer = await api(served, "POST", path, auth=VIEWER, body=body)
        assert status == 403 and "operator" in answer["error"], (path, answer)
    assert (await served.store.status())["parked"] == 0 and await served.store.recent_actions() == []


async def test_bad_input_is_400_or_404_with_one_line_and_changes_nothing(served: Served) -> None:
    """Not JSON, over 1 MB, not an object, unknown keys or filter values, both or neither of
    nmis/filter, an empty re-drive, an empty filter, a missing reason, no JSON content type:
    400; an NMI the store does not hold: 404. Nothing changes."""
    await load(served.store, [record(nmi_for(0))])
    due_before = await served.store.count_due()
    cases: list[tuple[str, Any, bytes | None, dict[str, str] | None, int]] = [
        ("/api/v1/redrive", None, b"{not json", {"Content-Type": "application/json"}, 400),
        ("/api/v1/redrive", None, b'{"nmis": ["' + b"8" * (1024 * 1024) + b'"]}',
         {"Content-Type": "application/json"}, 400),
        ("/api/v1/redrive", ["8001000000"], None, None, 400),
        ("/api/v1/redrive", {"nmis": [nmi_for(0)], "colour": "red"}, None, None, 400),
        ("/api/v1/redrive", {"filter": {"level": "third"}}, None, None, 400),
        ("/api/v1/redrive", {"filter": {"levels": "second"}}, None, None, 400),
        ("/api/v1/redrive", {"filter": {}}, None, None, 400),
        ("/api/v1/redrive", {"nmis": [nmi_for(0)], "filter": {"level": "second"}}, None, None, 400),
        ("/api/v1/redrive", {"preview": False}, None, None, 400),
        ("/api/v1/redrive", {"nmis": []}, None, None, 400),
        ("/api/v1/redrive", {"nmis": [nmi_for(0)], "preview": "yes"}, None, None, 400),
        ("/api/v1/redrive", {"filter": {"level": "second"}}, None, None, 400),  # matches no NMI: empty re-drive
        ("/api/v1/redrive", {"nmis": [nmi_for(0), nmi_for(5)]}, None, None, 404),
        ("/api/v1/redrive", None, json.dumps({"nmis": [nmi_for(0)]}).encode(), {"Content-Type": "text/plain"}, 400),
        (f"/api/v1/nmis/{nmi_for(0)}/park", {}, None, None, 400),
        (f"/api/v1/nmis/{nmi_for(0)}/park", {"reason": "   "}, None, None, 400),
        (f"/api/v1/nmis/{nmi_for(0)}/park", {"reason": "x" * 1001}, None, None, 400),
        (f"/api/v1/nmis/{nmi_for(5)}/park", {"reason": "x"}, None, None, 404),
        (f"/api/v1/nmis/{nmi_for(5)}/unpark", {}, None, None, 404),
    ]
    for path, body, raw, headers, expected in cases:
        status, answer = await api(served, "POST", path, body=body, raw=raw, headers=headers)
        assert status == expected and set(answer) == {"error"} and "\n" not in answer["error"], (path, body, answer)
    assert await served.store.count_due() == due_before and (await served.store.status())["parked"] == 0
    assert await served.store.recent_actions() == []


async def test_a_preview_changes_nothing_and_a_stale_confirmation_is_refused(served: Served) -> None:
    """A preview lists the NMIs (paged) with a fingerprint and changes nothing; a re-drive that
    carries the fingerprint of a selection that has since grown is refused with 409."""
    nmis = await flagged_store(served.settings, served.store, flagged=5)
    selection = {"filter": {"level": "second", "code": "2023", "status": "open"}}
    status, preview = await api(served, "POST", "/api/v1/redrive",
                                body={**selection, "preview": True, "pageSize": 2, "page": 3})
    assert status == 200 and preview["preview"] is True and preview["count"] == 5 and preview["pages"] == 3
    assert [n["nmi"] for n in preview["nmis"]] == nmis[4:]
    assert preview["nmis"][0] == {"nmi": nmis[4], "syncState": "synced", "due": False, "parked": False}
    assert await served.store.count_due() == 0 and await served.store.recent_actions() == []

    await flagged_store(served.settings, served.store, flagged=6)  # one more NMI flagged since the preview
    status, answer = await api(served, "POST", "/api/v1/redrive",
                               body={**selection, "preview": False, "expect": preview["fingerprint"]})
    assert status == 409 and answer["count"] == 6 and "preview it again" in answer["error"]
    assert await served.store.count_due() == 0


async def test_redrive_is_sent_once_per_nmi_by_the_next_pass_and_parked_nmis_get_nothing(
    served: Served, simulator: Simulator
) -> None:
    """After AEMO adds the inverter model to its approved list, a filtered re-drive of every
    open second-level 2023 makes the next pass send each NMI once (one PUT per part, AEMO's ids
    sent back: no duplicated equipment), which resolves the 2023s; the parked NMI receives no
    request until it is unparked, then one."""
    nmis = await flagged_store(served.settings, served.store, flagged=6, clean=3)
    parked = nmis[2]
    status, _ = await api(served, "POST", f"/api/v1/nmis/{parked}/park", body={"reason": "data fix in progress"})
    assert status == 200
    simulator.config.known_equipment = (*simulator.config.known_equipment, UNLISTED)

    selection = {"filter": {"level": "second", "code": "2023", "status": "open"}}
    status, preview = await api(served, "POST", "/api/v1/redrive", body={**selection, "preview": True})
    assert status == 200 and preview["count"] == 6 and preview["parked"] == 1
    status, done = await api(served, "POST", "/api/v1/redrive",
                             body={**selection, "preview": False, "expect": preview["fingerprint"],
                                   "reason": "AEMO approved AP-5000"})
    assert status == 200 and (done["count"], done["parked"], done["passRequested"]) == (6, 1, True)
    assert await served.store.count_due() == 5  # the parked one is due but waits

    simulator.state.reset_counters()
    await sync_once(served.settings, served.store)
    sent = [(r.method, r.path.rsplit("/", 2)[-2:]) for r in simulator.state.request_log
            if r.route != "oauth_token" and r.method != "GET"]
    expected = sorted([("PUT", ["nmi-details", nmi]) for nmi in nmis if nmi != parked]
                      + [("PUT", ["installation", nmi]) for nmi in nmis if nmi != parked])
    assert sorted(sent) == expected
    assert not any(parked in r.path for r in simulator.state.request_log)
    check = await read_back(served.store, simulator.state)
    assert check.ok, check
    open_2023 = await served.store.exception_page(ExceptionFilter(code="2023", status="open"))  # type: ignore[arg-type]
    assert [item["nmi"] for item in open_2023[0]] == [parked]

    status, answer = await api(served, "POST", f"/api/v1/nmis/{parked}/unpark", body={"reason": "fixed"})
    assert status == 200 and answer == {"nmi": parked, "parked": False, "changed": True}
    simulator.state.reset_counters()
    await sync_once(served.settings, served.store)
    assert sorted(r.method for r in simulator.state.request_log if parked in r.path) == ["PUT", "PUT"]
    assert simulator.state.duplicate_equipment() == []
    status, answer = await api(served, "GET", f"/api/v1/nmis/{parked}")
    assert [a["kind"] for a in answer["actions"]] == ["unpark", "redrive", "park"]
    assert answer["actions"][1]["reason"] == "AEMO approved AP-5000" and answer["actions"][1]["nmiCount"] == 6


async def test_park_and_unpark_answer_what_changed_and_are_logged(served: Served) -> None:
    """Park takes a reason and answers whether it changed anything; parking again updates the
    reason; unpark of a record that is not parked changes nothing and logs nothing."""
    await load(served.store, [record(nmi_for(0))])
    nmi = nmi_for(0)
    status, answer = await api(served, "POST", f"/api/v1/nmis/{nmi}/park", body={"reason": "meter swap"})
    assert status == 200 and answer == {"nmi": nmi, "parked": True, "changed": True, "reason": "meter swap"}
    status, answer = await api(served, "POST", f"/api/v1/nmis/{nmi}/park", body={"reason": "meter swap, day 2"})
    assert status == 200 and answer["changed"] is False
    assert (await served.store.status())["parked"] == 1 and await served.store.count_due() == 0
    status, answer = await api(served, "POST", f"/api/v1/nmis/{nmi}/unpark", raw=b"",
                               headers={"Content-Type": "application/json"})
    assert status == 200 and answer["changed"] is True
    status, answer = await api(served, "POST", f"/api/v1/nmis/{nmi}/unpark", body={})
    assert status == 200 and answer["changed"] is False
    actions = await served.store.actions_of(nmi)
    assert [(a["kind"], a["actor"], a["reason"]) for a in actions] == [
        ("unpark", "olivia", None), ("park", "olivia", "meter swap, day 2"), ("park", "olivia", "meter swap")]
    assert await served.store.count_due() == 1


async def test_the_browser_session_works_on_the_api_and_its_writes_need_the_csrf_header(
    served: Served, visitor: Visitor
) -> None:
    """Signed in with the form, the API answers with the session cookie; a write with the cookie
    alone is 403 (a page elsewhere could send the cookie), with the session's X-CSRF-Token 200."""
    await load(served.store, [record(nmi_for(0))])
    await visitor.sign_in(*OPERATOR)
    status, _ = await visitor.get("/api/v1/summary")
    assert status == 200
    token = (await visitor.get("/"), visitor.csrf)[1]
    path = f"{served.url}/api/v1/nmis/{nmi_for(0)}/park"
    async with visitor.http.post(path, json={"reason": "x"}) as response:
        assert response.status == 403
    async with visitor.http.post(path, json={"reason": "x"}, headers={"X-CSRF-Token": token}) as response:
        assert response.status == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_api_paths_that_do_not_exist_answer_json(served: Served) -> None:
    """An unknown API path is a JSON 404 for a signed-in script, and 401 for anyone else (the
    console does not tell strangers which paths exist)."""
    status, answer = await api(served, "GET", "/api/v1/nothing-here")
    assert status == 404 and set(answer) == {"error"}
    status, answer = await api(served, "GET", "/api/v1/nothing-here", auth=None)
    assert status == 401
