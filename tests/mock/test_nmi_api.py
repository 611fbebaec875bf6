"""WEM DER NMI API v1: create, read, update and its two validation levels."""

from __future__ import annotations

from typing import Any

import pytest

from dersync.mock import Simulator

from .helpers import NMI_A, NMI_B, Api, nmi_record


async def test_nmi_create_get_put(api: Api, sim: Simulator) -> None:
    """POST creates (201, wrapped data with record dates), GET reads it, PUT updates it (200)."""
    created = await api.create_nmi(NMI_A)
    assert created.status == 201
    data = created.body["data"]
    assert data["nmi"] == NMI_A and data["recordCreationDate"] and data["recordUpdateDate"]
    got = await api.call("GET", api.nmi_url(f"/{NMI_A}"))
    assert got.status == 200 and got.body["data"] == data
    sim.clock.advance(5)
    put = await api.call("PUT", api.nmi_url(f"/{NMI_A}"), body=nmi_record(NMI_A, status="Inactive"))
    assert put.status == 200
    assert put.body["data"]["status"] == "Inactive"
    assert put.body["data"]["recordUpdateDate"] > data["recordUpdateDate"]
    assert sim.state.nmis[NMI_A]["status"] == "Inactive"
    assert sim.state.nmi_creates[NMI_A] == 1


async def test_nmi_unknown_is_404(api: Api) -> None:
    """GET and PUT of an unregistered NMI are 404 with AEMO's error body."""
    get = await api.call("GET", api.nmi_url(f"/{NMI_B}"))
    put = await api.call("PUT", api.nmi_url(f"/{NMI_B}"), body=nmi_record(NMI_B))
    assert (get.status, put.status) == (404, 404)
    assert get.body["errors"][0]["code"] == "404"


NMI_CASES: list[tuple[str, str, str, Any, int, str]] = [
    # id, method, path nmi ("" = collection), body, status, first error code
    ("duplicate", "POST", "", nmi_record(NMI_A), 422, "1001"),
    ("short nmi", "POST", "", nmi_record("123"), 422, "1000"),
    ("letter O", "POST", "", nmi_record("800100000O"), 422, "1000"),
    ("lowercase", "POST", "", nmi_record("abcdefghjk"), 422, "1000"),
    ("no status", "POST", "", {"nmi": NMI_B}, 422, "1004"),
    ("no nmi", "POST", "", {"status": "Active"}, 422, "1004"),
    ("path mismatch", "PUT", NMI_A, nmi_record(NMI_B), 422, "1005"),
    ("not an object", "POST", "", [nmi_record(NMI_B)], 400, "1020"),
    ("wrapped", "POST", "", {"data": nmi_record(NMI_B)}, 400, "1020"),
    ("number postCode", "POST", "", nmi_record(NMI_B, postCode=6000), 400, "1020"),
    ("unknown field", "POST", "", nmi_record(NMI_B, colour="red"), 400, "1020"),
]


@pytest.mark.parametrize(("case", "method", "path_nmi", "body", "status", "code"), NMI_CASES,
                         ids=[c[0] for c in NMI_CASES])
async def test_nmi_validation(
    api: Api, sim: Simulator, case: str, method: str, path_nmi: str, body: Any, status: int, code: str
) -> None:
    """Schema failures are 400/1020; first-level failures are 422 with a 1000-1999 code."""
    assert (await api.create_nmi(NMI_A)).status == 201
    url = api.nmi_url(f"/{path_nmi}" if path_nmi else "")
    r = await api.call(method, url, body=body)
    assert r.status == status, r.body
    assert r.body["errors"][0]["code"] == code
    assert set(sim.state.nmis) == {NMI_A}
    assert sim.state.nmis[NMI_A]["status"] == "Active"


async def test_nmi_reports_every_problem(api: Api) -> None:
    """First-level answers list one errors[] entry per problem."""
    r = await api.call("POST", api.nmi_url(), body={"nmi": "bad", "substation": "S"})
    assert r.status == 422
    assert sorted(e["code"] for e in r.body["errors"]) == ["1000", "1004"]
