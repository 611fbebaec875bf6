"""OAuth tokens against the simulator's token endpoint (real HTTP over loopback).

Expiry is driven by the simulator's clock (`sim.clock.advance`), which the TokenProvider is
given as its clock, so no test sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from dersync.aemo import AemoClient, Pacer, TokenProvider, Transport
from dersync.aemo.auth import standard_token_body, token_url_with_grant
from dersync.errors import AuthError, RetriesExhausted
from dersync.mock import Simulator
from dersync.settings import Settings

NMI = "8001000001"


def _issued(sim: Simulator) -> int:
    return sim.state.token_issued_total


@pytest.mark.parametrize("sim_options", [{"token_body_style": "aemo"}, {"token_body_style": "standard"}])
async def test_aemo_and_standard_token_bodies_both_work(sim: Simulator, client: AemoClient) -> None:
    """AEMO's documented body (`acess_token`, string `access_token_expires_in`) and an RFC 6749
    body both yield a token the APIs accept, with the lifetime the endpoint stated."""
    await client.check_credentials()
    response = await client.nmi.get(NMI)
    assert response.status == 404  # authorised: the simulator simply holds no such NMI
    assert client.tokens.refreshes == _issued(sim) == 1
    assert client.tokens.has_valid_token


def test_token_body_mapping() -> None:
    """The compliance mapping: AEMO's keys become standard ones; standard bodies pass through."""
    aemo = standard_token_body({"transactionID": "t", "acess_token": "abc", "access_token_expires_in": "3599"})
    assert aemo == {"transactionID": "t", "access_token": "abc", "expires_in": 3599, "token_type": "Bearer"}
    standard = {"access_token": "abc", "token_type": "bearer", "expires_in": 60}
    assert standard_token_body(standard) == standard
    assert "expires_in" not in standard_token_body({"access_token": "abc", "expires_in": "soon"})


def test_grant_type_goes_in_the_query_too() -> None:
    """AEMO's portal example passes grant_type as a query parameter (the form body carries it too)."""
    assert token_url_with_grant("https://x/oauth/v1/token") == "https://x/oauth/v1/token?grant_type=client_credentials"
    assert token_url_with_grant("https://x/t?a=1&grant_type=old").endswith("?a=1&grant_type=client_credentials")


async def test_refused_credentials_raise_auth_error_without_the_secret(sim: Simulator,
                                                                       settings_for: Callable[..., Settings]) -> None:
    """A 401 from the token endpoint is an AuthError naming the refusal; neither the exception
    nor any log event contains the secret, and nothing is retried."""
    secret = "wrong-secret-value-42"
    with capture_logs() as logs:
        async with AemoClient(settings_for(client_secret=secret)) as client:
            with pytest.raises(AuthError) as caught:
                await client.check_credentials()
    assert str(caught.value) == "AEMO's OAuth endpoint refused the client id/secret (401)"
    assert caught.value.status == 401
    assert secret not in repr(caught.value) and secret not in str(logs)
    assert sim.state.requests_by_route[("POST", "oauth_token", 401)] == 1
    assert client.tokens.refreshes == 0


async def test_token_is_refreshed_before_it_expires(sim: Simulator, settings: Settings) -> None:
    """The token is reused until `token_refresh_margin_seconds` before expiry, then replaced
    while the old one is still valid at AEMO (refresh ahead of expiry, not at it)."""
    tokens = TokenProvider(settings, clock=sim.clock.monotonic)
    first = await tokens.token()
    lifetime, margin = sim.config.token_lifetime_seconds, settings.token_refresh_margin_seconds

    sim.clock.advance(lifetime - margin - 5)
    assert await tokens.token() == first
    assert _issued(sim) == 1

    sim.clock.advance(10)
    second = await tokens.token()
    assert second != first
    assert _issued(sim) == tokens.refreshes == 2
    assert sim.tokens.valid(first)  # the old one had not yet expired when it was replaced


@pytest.mark.parametrize("sim_options", [{"token_lifetime_seconds": 100}])
async def test_short_lived_tokens_are_refreshed_at_half_life(sim: Simulator, settings: Settings) -> None:
    """A token living less than twice the margin is refreshed at half its life, not on every call."""
    tokens = TokenProvider(settings, clock=sim.clock.monotonic)
    first = await tokens.token()
    sim.clock.advance(45)
    assert await tokens.token() == first
    sim.clock.advance(10)
    assert await tokens.token() != first


async def test_concurrent_callers_share_one_fetch(sim: Simulator, settings: Settings) -> None:
    """Many tasks asking at once for a token cause exactly one token request."""
    tokens = TokenProvider(settings, clock=sim.clock.monotonic)
    got = await asyncio.gather(*(tokens.token() for _ in range(25)))
    assert len(set(got)) == 1
    assert _issued(sim) == tokens.refreshes == 1


async def test_concurrent_callers_share_one_failure(sim: Simulator, settings_for: Callable[..., Settings]) -> None:
    """When the one fetch fails, the callers queued behind it get that failure instead of each
    hammering the endpoint with the same refused credentials."""
    tokens = TokenProvider(settings_for(client_secret="nope"), clock=sim.clock.monotonic)
    results = await asyncio.gather(*(tokens.token() for _ in range(10)), return_exceptions=True)
    assert all(isinstance(r, AuthError) for r in results)
    assert sim.state.requests_by_route[("POST", "oauth_token", 401)] == 1


async def test_401_mid_pass_refreshes_once_and_retries(sim: Simulator, client: AemoClient) -> None:
    """AEMO dropping a token mid-pass (401) costs one refresh and one repeat of the request."""
    assert (await client.nmi.get(NMI)).status == 404
    sim.tokens.revoke_all()
    response = await client.nmi.get(NMI)
    assert response.status == 404
    assert _issued(sim) == client.tokens.refreshes == 2
    assert client.transport.stats.requests[("nmi", "GET", 401)] == 1
    assert client.transport.stats.retries == 0  # a token refresh is not a retriable failure


@pytest.mark.parametrize("sim_options", [{"token_lifetime_seconds": 0}])
async def test_a_fresh_token_refused_again_is_an_auth_error(sim: Simulator, client: AemoClient) -> None:
    """If AEMO refuses the freshly fetched token too, the transport stops with AuthError after
    exactly one refresh (it never loops on 401)."""
    with pytest.raises(AuthError) as caught:
        await client.nmi.get(NMI)
    assert caught.value.status == 401
    assert caught.value.transaction_id
    assert _issued(sim) == 2
    assert client.transport.stats.requests[("nmi", "GET", 401)] == 2


async def test_invalidate_drops_only_the_stale_token(sim: Simulator, settings: Settings) -> None:
    """A late 401 for an already replaced token must not throw away the new one."""
    tokens = TokenProvider(settings, clock=sim.clock.monotonic)
    old = await tokens.token()
    await tokens.invalidate(old)
    new = await tokens.token()
    await tokens.invalidate(old)
    assert await tokens.token() == new
    assert _issued(sim) == 2


@pytest.mark.parametrize("sim_options", [{"oauth_fault_rate": 1.0}])
async def test_token_endpoint_outage_is_retried_then_exhausted(sim: Simulator, settings: Settings) -> None:
    """5xx from the token endpoint is retried with backoff up to max_retries, then RetriesExhausted."""
    tokens = TokenProvider(settings)
    with pytest.raises(RetriesExhausted) as caught:
        await tokens.token()
    assert caught.value.status == 500
    assert sim.state.requests_by_route[("POST", "oauth_token", 500)] == settings.max_retries + 1


@pytest.mark.parametrize("sim_options", [{"oauth_fault_rate": 0.5, "seed": 0}])
async def test_token_endpoint_blip_is_retried(sim: Simulator, settings: Settings) -> None:
    """A passing 5xx on the token endpoint costs a retry, not the pass."""
    tokens = TokenProvider(settings)
    await tokens.token()
    assert sim.state.faults["oauth_500"] >= 1
    assert tokens.refreshes == _issued(sim) == 1


async def test_token_endpoint_unreachable_is_retriable(sim: Simulator, settings: Settings) -> None:
    """Connection refused at the token endpoint is retriable (RetriesExhausted), not an AuthError."""
    await sim.stop()
    with pytest.raises(RetriesExhausted):
        await TokenProvider(settings).token()


@pytest.mark.parametrize("sim_options", [{"api_key": "apim-key-123"}])
async def test_api_key_header_is_sent_when_configured(sim: Simulator, settings_for: Callable[..., Settings]) -> None:
    """With an APIM subscription key set, both the token endpoint and the APIs accept the calls;
    without it they are refused."""
    async with AemoClient(settings_for(api_key="apim-key-123")) as client:
        assert (await client.nmi.get(NMI)).status == 404
    async with AemoClient(settings_for()) as client:
        with pytest.raises(AuthError):
            await client.check_credentials()


async def test_token_never_appears_in_logs(sim: Simulator, settings: Settings) -> None:
    """Log events about tokens and requests carry no token value and no Authorization header."""
    with capture_logs() as logs:
        async with AemoClient(settings) as client:
            await client.nmi.get(NMI)
            token = await client.tokens.token()
    text = str(logs)
    assert token not in text and "Bearer" not in text and "demo-secret" not in text
    assert any(e["event"] == "aemo.token.fetched" for e in logs)


async def test_transport_shares_the_token_provider(sim: Simulator, settings: Settings) -> None:
    """A Transport built by hand (as tests and tools do) uses the provider it is given."""
    tokens = TokenProvider(settings, clock=sim.clock.monotonic)
    transport = Transport(settings, tokens, Pacer(6000))
    await transport.start()
    try:
        await transport.request("nmi", "GET", f"/nmi-details/{NMI}", nmi=NMI, operation="test")
    finally:
        await transport.close()
    assert tokens.refreshes == 1




# --- expiry versus refusal: a scripted gateway over loopback ---------------------------------------

@pytest.fixture
async def scripted_gateway() -> Any:
    """A tiny real server: tokens t1, t2, t3, ... in turn. t1 works once then "expires"; t2 is
    dead on arrival (expired before first use); t3 onwards work."""
    from aiohttp import web

    issued: list[str] = []
    used: set[str] = set()

    async def token(_request: web.Request) -> web.Response:
        issued.append(f"t{len(issued) + 1}")
        return web.json_response({"access_token": issued[-1], "token_type": "Bearer", "expires_in": 3600})

    async def nmi_get(request: web.Request) -> web.Response:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        refused = bearer == "t2" or (bearer == "t1" and "t1" in used)
        used.add(bearer)
        if refused:
            return web.json_response({"transactionId": "x", "errors": [{"code": "401"}]}, status=401)
        return web.json_response({"transactionId": "ok", "data": {"nmi": request.match_info["nmi"]}})

    app = web.Application()
    app.router.add_post("/oauth/v1/token", token)
    app.router.add_get("/wem/v1/der-register/nmi-details/{nmi}", nmi_get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", issued
    finally:
        await runner.cleanup()


async def test_a_request_caught_by_two_expiries_still_goes_through(
    scripted_gateway: Any, settings_for: Callable[..., Settings]
) -> None:
    """A 401 for a token AEMO had accepted before is an expiry, not a refusal: it does not count
    towards "a fresh token refused again is fatal". Here t1 (proven) expires, its replacement t2
    is refused at first use, and t3 carries the request through."""
    base, issued = scripted_gateway
    settings = settings_for(oauth_token_url=f"{base}/oauth/v1/token", nmi_api_url=f"{base}/wem/v1/der-register")
    async with AemoClient(settings) as client:
        assert (await client.nmi.get(NMI)).ok  # t1 accepted
        response = await client.nmi.get(NMI)  # t1 expired -> t2 refused -> t3
    assert response.ok and response.transaction_id == "ok"
    assert issued == ["t1", "t2", "t3"]
    assert client.transport.stats.requests[("nmi", "GET", 401)] == 2
