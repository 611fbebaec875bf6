"""The simulator's gateway behaviour: OAuth, headers, bodies, lifecycle and persistence.

All tests talk real HTTP over loopback; none sleeps (token expiry uses the simulator's clock).
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from dersync.mock import DEFAULT_KNOWN_EQUIPMENT, Simulator, SimulatorConfig, run_simulator

from .helpers import NMI_A, NMI_B, Api, installation, nmi_record


# ------------------------------------------------------------------------------------- OAuth
@pytest.mark.parametrize(
    ("sim_config", "expected_keys"),
    [
        ({"token_body_style": "aemo"}, {"transactionID", "acess_token", "access_token_expires_in"}),
        ({"token_body_style": "standard"}, {"access_token", "token_type", "expires_in"}),
    ],
    indirect=["sim_config"],
)
async def test_token_body_styles(api: Api, session: aiohttp.ClientSession, sim: Simulator,
                                 expected_keys: set[str]) -> None:
    """The token endpoint answers AEMO's documented (misspelt, string-expiry) body or the RFC 6749 body."""
    async with session.post(
        sim.oauth_token_url, params={"grant_type": "client_credentials"}, headers={"Authorization": api.basic()}
    ) as r:
        assert r.status == 200
        body = await r.json()
    assert set(body) == expected_keys
    if sim.config.token_body_style == "aemo":
        assert body["access_token_expires_in"] == "3599"  # a string, as documented
    else:
        assert body["expires_in"] == 3599 and body["token_type"] == "Bearer"
    assert sim.state.token_issued_total == 1


async def test_token_grant_type_in_form_body(api: Api, session: aiohttp.ClientSession, sim: Simulator) -> None:
    """grant_type is accepted as a form body as well as a query parameter, and the token works."""
    async with session.post(
        sim.oauth_token_url, data={"grant_type": "client_credentials"}, headers={"Authorization": api.basic()}
    ) as r:
        assert r.status == 200
        token = (await r.json())["acess_token"]
    api._token = token
    assert (await api.call("GET", api.nmi_url(f"/{NMI_A}"))).status == 404  # authorised, just unknown


@pytest.mark.parametrize(
    ("method", "auth", "params", "status", "body"),
    [
        ("POST", ("dersync-demo", "wrong"), {"grant_type": "client_credentials"}, 401,
         {"code": 401, "title": "Unauthorized", "detail": "Authorization failed", "source": "API Gateway"}),
        ("POST", None, {"grant_type": "client_credentials"}, 401, None),
        ("POST", ("dersync-demo", "demo-secret"), {}, 400, None),
        ("POST", ("dersync-demo", "demo-secret"), {"grant_type": "password"}, 400, None),
        ("GET", ("dersync-demo", "demo-secret"), {"grant_type": "client_credentials"}, 405, None),
    ],
)
async def test_token_rejections(
    api: Api, session: aiohttp.ClientSession, sim: Simulator, method: str, auth: Any, params: dict, status: int,
    body: Any
) -> None:
    """Bad credentials 401 (documented gateway body), bad/missing grant_type 400, non-POST 405."""
    headers = {"Authorization": api.basic(*auth)} if auth else {}
    async with session.request(method, sim.oauth_token_url, params=params, headers=headers) as r:
        assert r.status == status
        got = await r.json()
    assert got["code"] == status and "title" in got and "detail" in got
    if body is not None:
        assert got == body
    assert sim.state.token_issued_total == 0


@pytest.mark.parametrize("sim_config", [{"token_lifetime_seconds": 1}], indirect=True)
async def test_expired_token_is_401(api: Api, sim: Simulator) -> None:
    """A token past its lifetime (simulator clock) gets the API's 401 body; a new token works."""
    assert (await api.call("GET", api.nmi_url(f"/{NMI_A}"))).status == 404
    sim.clock.advance(2)
    r = await api.call("GET", api.nmi_url(f"/{NMI_A}"))
    assert r.status == 401
    assert r.body["transactionId"]
    assert r.body["errors"] == [{"code": "401", "title": "Unauthorised", "detail": "Authorization failed"}]
    api._token = None
    assert (await api.call("GET", api.nmi_url(f"/{NMI_A}"))).status == 404


@pytest.mark.parametrize("sim_config", [{"oauth_fault_rate": 1.0, "seed": 1}], indirect=True)
async def test_oauth_fault(api: Api, session: aiohttp.ClientSession, sim: Simulator) -> None:
    """oauth_fault_rate makes the token endpoint answer 500 with its documented body."""
    async with session.post(
        sim.oauth_token_url, params={"grant_type": "client_credentials"}, headers={"Authorization": api.basic()}
    ) as r:
        assert r.status == 500
        assert (await r.json())["title"] == "Internal Server Error"


@pytest.mark.parametrize("sim_config", [{"api_key": "k-123"}], indirect=True)
async def test_api_key_required_when_configured(api: Api, session: aiohttp.ClientSession, sim: Simulator) -> None:
    """With api_key set, OAuth and API calls need x-apikey; with it, they work."""
    async with session.post(
        sim.oauth_token_url, params={"grant_type": "client_credentials"}, headers={"Authorization": api.basic()}
    ) as r:
        assert r.status == 401
    async with session.post(
        sim.oauth_token_url,
        params={"grant_type": "client_credentials"},
        headers={"Authorization": api.basic(), "x-apikey": "k-123"},
    ) as r:
        assert r.status == 200
        api._token = (await r.json())["acess_token"]
    assert (await api.call("GET", api.nmi_url(f"/{NMI_A}"))).status == 401
    assert (await api.call("GET", api.nmi_url(f"/{NMI_A}"), headers={"x-apikey": "k-123"})).status == 404


# ------------------------------------------------------------------------ gateway status codes
def _chunked() -> Any:
    async def gen() -> Any:
        yield json.dumps(nmi_record(NMI_A)).encode()

    return gen()


GATEWAY_CASES: list[tuple[str, str, str, dict[str, Any], int]] = [
    # id, method, path suffix (under nmi API), request kwargs, expected status
    ("no bearer", "GET", f"/nmi-details/{NMI_A}", {"headers": {"Authorization": None}}, 401),
    ("unknown bearer", "GET", f"/nmi-details/{NMI_A}", {"headers": {"Authorization": "Bearer nope"}}, 401),
    ("basic not bearer", "GET", f"/nmi-details/{NMI_A}", {"headers": {"Authorization": "Basic eDp5"}}, 401),
    ("no participant", "GET", f"/nmi-details/{NMI_A}", {"headers": {"X-initiatingParticipantID": None}}, 400),
    ("no market", "GET", f"/nmi-details/{NMI_A}", {"headers": {"X-market": None}}, 400),
    ("wrong market", "GET", f"/nmi-details/{NMI_A}", {"headers": {"X-market": "NEM"}}, 400),
    ("chunked body", "POST", "/nmi-details", {"data": "CHUNKED"}, 411),
    ("text/plain", "POST", "/nmi-details", {"body": nmi_record(NMI_A), "headers": {"Content-Type": "text/plain"}}, 415),
    ("no content-type", "POST", "/nmi-details", {"data": b"{}", "headers": {"Content-Type": None}}, 415),
    ("brotli", "POST", "/nmi-details", {"body": nmi_record(NMI_A), "headers": {"Content-Encoding": "br"}}, 415),
    ("bad gzip", "POST", "/nmi-details", {"data": b"not gzip", "headers": {"Content-Encoding": "gzip"}}, 400),
    ("invalid json", "POST", "/nmi-details", {"data": b"{nope"}, 400),
    ("unknown path", "GET", "/nmi-detail/x", {}, 404),
    ("wrong method", "DELETE", f"/nmi-details/{NMI_A}", {}, 405),
    ("post to item", "POST", f"/nmi-details/{NMI_A}", {"body": nmi_record(NMI_A)}, 405),
]


@pytest.mark.parametrize(("case", "method", "suffix", "kwargs", "status"), GATEWAY_CASES,
                         ids=[c[0] for c in GATEWAY_CASES])
async def test_gateway_status_codes(
    api: Api, sim: Simulator, case: str, method: str, suffix: str, kwargs: dict[str, Any], status: int
) -> None:
    """Gateway rules answer with the documented status and an error body carrying a transactionId."""
    kwargs = dict(kwargs)
    if kwargs.get("data") == "CHUNKED":
        kwargs["data"] = _chunked()
    r = await api.call(method, sim.nmi_api_url + suffix, **kwargs)
    assert r.status == status, r.body
    assert r.body["transactionId"]
    assert r.body["errors"][0]["code"] in {str(status), "1020"}
    assert r.headers["X-Transaction-Id"] == r.body["transactionId"]
    assert not sim.state.nmis


@pytest.mark.parametrize("sim_config", [{"participant_id": "WPNO"}], indirect=True)
async def test_participant_mismatch_is_403(api: Api, sim: Simulator) -> None:
    """With participant_id configured, another X-initiatingParticipantID is forbidden."""
    ok = await api.call("GET", api.nmi_url(f"/{NMI_A}"))
    bad = await api.call("GET", api.nmi_url(f"/{NMI_A}"), headers={"X-initiatingParticipantID": "OTHER"})
    assert (ok.status, bad.status) == (404, 403)
    assert bad.body["errors"][0]["title"] == "Forbidden"


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", lambda b: zlib.compress(b)[2:-4])],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
async def test_compressed_bodies_accepted(api: Api, sim: Simulator, encoding: str,
                                         compress: Callable[[bytes], bytes]) -> None:
    """gzip and deflate (zlib-wrapped or raw) request bodies are decompressed and applied."""
    raw = json.dumps(nmi_record(NMI_A)).encode()
    r = await api.call("POST", api.nmi_url(), data=compress(raw), headers={"Content-Encoding": encoding})
    assert r.status == 201, r.body
    assert sim.state.nmis[NMI_A]["tni"] == "WPRT"


@pytest.mark.parametrize("kind", ["uncompressed", "gzip-bomb"])
async def test_payload_over_10mb_is_413(api: Api, sim: Simulator, kind: str) -> None:
    """Over 10,000,000 bytes, compressed or once decompressed, is 413 and nothing is stored."""
    record = nmi_record(NMI_A, substation="x" * 10_000_001)
    raw = json.dumps(record).encode()
    if kind == "uncompressed":
        r = await api.call("POST", api.nmi_url(), data=raw)
    else:
        packed = gzip.compress(raw)
        assert len(packed) < 100_000
        r = await api.call("POST", api.nmi_url(), data=packed, headers={"Content-Encoding": "gzip"})
    assert r.status == 413
    assert not sim.state.nmis


async def test_every_response_has_transaction_id(api: Api) -> None:
    """Successes and errors alike carry a fresh uuid transactionId."""
    a = await api.create_nmi(NMI_A)
    b = await api.call("GET", api.nmi_url("/0000000000"))
    assert a.body["transactionId"] != b.body["transactionId"]
    assert len(a.body["transactionId"]) == 36


# ---------------------------------------------------------------------------------- latency
@pytest.mark.parametrize("sim_config", [{"latency_seconds": 0.2}], indirect=True)
async def test_latency_added(api: Api) -> None:
    """latency_seconds delays every API answer."""
    await api.token()
    started = time.monotonic()
    await api.call("GET", api.nmi_url(f"/{NMI_A}"))
    assert time.monotonic() - started >= 0.2


# ------------------------------------------------------------------------- lifecycle and state
async def test_stop_start_same_port_keeps_state(api: Api, sim: Simulator) -> None:
    """stop() refuses connections; start() listens on the same port with register and tokens intact."""
    await api.register(NMI_A)
    url = sim.url
    await sim.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.call("GET", api.inst_url(f"/{NMI_A}"))
    await sim.start()
    assert sim.url == url
    r = await api.get_installation(NMI_A)
    assert r.status == 200 and r.body["data"]["nmi"] == NMI_A


async def test_state_file_round_trip(tmp_path: Any, session: aiohttp.ClientSession) -> None:
    """With state_file, a second simulator process sees the first one's register and ids continue."""
    path = str(tmp_path / "aemo.json")
    async with run_simulator(SimulatorConfig(state_file=path)) as first:
        api = Api(first, session)
        created = await api.register(NMI_A)
        first_id = created.body["data"]["acConnections"][0]["connectionId"]
    async with run_simulator(SimulatorConfig(state_file=path)) as second:
        api = Api(second, session)
        assert second.state.installations[NMI_A]["acConnections"][0]["connectionId"] == first_id
        assert (await api.call("GET", api.nmi_url(f"/{NMI_A}"))).status == 200
        await api.create_nmi(NMI_B)
        r = await api.create_installation(installation(NMI_B))
        assert r.body["data"]["acConnections"][0]["connectionId"] > first_id
        assert len(second.state.history[NMI_A]) == 1


def test_default_known_equipment_exported() -> None:
    """DEFAULT_KNOWN_EQUIPMENT holds real-looking (manufacturer, model) pairs used by default."""
    assert ("Fronius", "Primo 5.0-1") in DEFAULT_KNOWN_EQUIPMENT
    assert SimulatorConfig().known_equipment == DEFAULT_KNOWN_EQUIPMENT


def test_config_repr_hides_secrets() -> None:
    """The config's repr (which may be logged) does not contain the client secret or API key."""
    text = repr(SimulatorConfig(client_secret="s3cr3t", api_key="k3y"))
    assert "s3cr3t" not in text and "k3y" not in text
