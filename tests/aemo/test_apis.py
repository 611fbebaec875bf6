"""NMI and Installation API calls, and the batched `find`, against the simulator in both of
the response shapes AEMO's documents leave open (wrapped and bare)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from dersync.aemo import AemoClient
from dersync.errors import FatalError
from dersync.mock import Simulator
from dersync.settings import Settings
from dersync.testing import connection, installation, nmi_details, nmi_for

SHAPES = [{"response_shape": "wrapped"}, {"response_shape": "bare"}]
SHAPES_AND_HEADERS = [*SHAPES, {"response_shape": "bare", "bare_list_paging_headers": True}]


def _register(sim: Simulator, nmis: list[str]) -> None:
    """Put NMIs and installations straight into the simulated register (no HTTP, no counters)."""
    for nmi in nmis:
        sim.state.create_nmi(nmi_details(nmi))
        sim.state.create_installation(installation(nmi), lambda inst: ([], set(), set()))


def _list_requests(sim: Simulator) -> int:
    return sim.state.count(route="installation_list")


@pytest.mark.parametrize("sim_options", SHAPES)
async def test_nmi_and_installation_round_trip(sim: Simulator, client: AemoClient) -> None:
    """create / update / get / history give unwrapped data with AEMO's ids in either shape."""
    nmi = nmi_for(1)
    assert (await client.nmi.create(nmi_details(nmi))).status == 201
    assert (await client.nmi.update(nmi, nmi_details(nmi, postCode="6000"))).data["postCode"] == "6000"
    assert (await client.nmi.get(nmi)).data["nmi"] == nmi

    created = await client.installation.create(installation(nmi))
    assert created.status == 201 and created.transaction_id
    connection_id = created.data["acConnections"][0]["connectionId"]
    assert isinstance(connection_id, int)
    assert "transactionId" not in created.data and "exceptions" not in created.data

    body = installation(nmi, comments="updated")
    body["acConnections"][0]["connectionId"] = connection_id
    body["acConnections"][0]["devices"][0]["deviceId"] = created.data["acConnections"][0]["devices"][0]["deviceId"]
    updated = await client.installation.update(nmi, body)
    assert updated.status == 200 and updated.data["comments"] == "updated"
    assert len(updated.data["acConnections"]) == 1  # ids sent back: nothing duplicated

    assert (await client.installation.get(nmi)).data["nmi"] == nmi
    history = await client.installation.history(nmi)
    assert isinstance(history.data, list) and len(history.data) == 2
    assert (await client.installation.get(nmi_for(2))).status == 404


@pytest.mark.parametrize("sim_options", SHAPES)
async def test_second_level_exceptions_reach_the_engine(sim: Simulator, client: AemoClient) -> None:
    """Unapproved equipment is accepted (201) with second-level exceptions naming the connection
    by AEMO's id and the operator's nspConnectionId, in either shape."""
    nmi = nmi_for(3)
    await client.nmi.create(nmi_details(nmi))
    odd = connection("C-odd", maker=("Acme", "Mystery 1"))
    response = await client.installation.create(installation(nmi, connections=[odd]))
    assert response.ok
    codes = {p.code for p in response.exceptions}
    assert "2023" in codes
    problem = next(p for p in response.exceptions if p.code == "2023")
    assert problem.nsp_connection_id == "C-odd"
    assert problem.connection_id == response.data["acConnections"][0]["connectionId"]
    assert problem.detail and problem.raw["code"] == 2023


@pytest.mark.parametrize("sim_options", SHAPES_AND_HEADERS)
async def test_find_250_nmis_takes_3_requests(sim: Simulator, client: AemoClient) -> None:
    """250 NMIs are looked up 100 at a time: 3 requests, returning only the NMIs AEMO holds."""
    nmis = [nmi_for(i) for i in range(250)]
    held = [nmis[0], nmis[99], nmis[100], nmis[249]]
    _register(sim, held)
    found = await client.installation.find(nmis)
    assert sorted(found) == sorted(held)
    assert found[nmis[99]]["nmi"] == nmis[99]
    assert _list_requests(sim) == 3


@pytest.mark.parametrize("sim_options", SHAPES_AND_HEADERS)
async def test_find_a_full_batch_needs_no_extra_page(sim: Simulator, client: AemoClient) -> None:
    """When every NMI of a full batch is held (a full page), no extra empty page is fetched."""
    nmis = [nmi_for(i) for i in range(100)]
    _register(sim, nmis)
    assert len(await client.installation.find(nmis)) == 100
    assert _list_requests(sim) == 1


@pytest.mark.parametrize("sim_options", SHAPES_AND_HEADERS)
async def test_find_follows_pages(sim: Simulator, client: AemoClient) -> None:
    """With 25 per page, 60 held NMIs come back over pages of 25, 25 and 10, whether AEMO says
    how many pages there are (wrapped) or not (bare list: the short page ends it)."""
    nmis = [nmi_for(i) for i in range(70)]
    _register(sim, nmis[:60])
    found = await client.installation.find(nmis, pageSize="25")
    assert sorted(found) == nmis[:60]
    assert _list_requests(sim) == 3


@pytest.mark.parametrize("sim_options", SHAPES)
async def test_find_with_no_matches_is_empty(sim: Simulator, client: AemoClient) -> None:
    """NMIs AEMO does not hold give an empty mapping, one request per batch."""
    assert await client.installation.find([nmi_for(1), nmi_for(2)]) == {}
    assert await client.installation.find([]) == {}
    assert _list_requests(sim) == 1


async def test_find_passes_filters(sim: Simulator, client: AemoClient) -> None:
    """Extra filters are AEMO's query parameters: Conditional-only excludes Confirmed records."""
    _register(sim, [nmi_for(1)])
    assert await client.installation.find([nmi_for(1)], installationStage="Conditional") == {}
    assert list(await client.installation.find([nmi_for(1)], installationStage="Confirmed")) == [nmi_for(1)]


async def test_find_rejected_query_is_fatal(sim: Simulator, client: AemoClient) -> None:
    """A lookup AEMO rejects (400: a bad filter value) is a client bug: FatalError, not a loop."""
    with pytest.raises(FatalError, match="400"):
        await client.installation.find([nmi_for(1)], equipmentType="Flux Capacitor")


# --- a misbehaving AEMO: a real loopback server that ignores `page` -------------------------------

@pytest.fixture
async def stuck_pager() -> AsyncIterator[str]:
    """A server that answers every list GET with the same full page of 25 (wrong NMIs included)."""

    async def token(_request: web.Request) -> web.Response:
        return web.json_response({"access_token": "t", "token_type": "Bearer", "expires_in": 3600})

    async def listing(_request: web.Request) -> web.Response:
        return web.json_response([{"nmi": nmi_for(1000 + i)} for i in range(25)])

    app = web.Application()
    app.router.add_post("/oauth/v1/token", token)
    app.router.add_get("/v2/der-register/installation", listing)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_find_refuses_a_repeated_page(stuck_pager: str, settings_for: Callable[..., Settings]) -> None:
    """If AEMO ignored `page` and sent the same full page again, find raises instead of looping."""
    settings = settings_for(oauth_token_url=f"{stuck_pager}/oauth/v1/token",
                            installation_api_url=f"{stuck_pager}/v2/der-register")
    async with AemoClient(settings) as client:
        with pytest.raises(FatalError, match="identical"):
            await client.installation.find([nmi_for(i) for i in range(1000, 1050)], pageSize="25")
        assert sum(client.transport.stats.requests.values()) == 2
