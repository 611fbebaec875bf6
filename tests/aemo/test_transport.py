"""Transport behaviour against the simulator: the failure table, headers and bodies, logging.

Faults come from the simulator's own seeded switches (`fault_rate`, `fault_kinds`, `seed`); a
seed is picked (see `fault_seed` in conftest) so that the fault sequence is exactly the row's,
e.g. "503, then a normal answer". Backoff is a few milliseconds (conftest settings).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from dersync.aemo import AemoClient, classify_status
from dersync.errors import AmbiguousWriteError, FatalError, PayloadTooLarge, RetriesExhausted
from dersync.mock import Simulator, SimulatorConfig, run_simulator
from dersync.settings import Settings
from dersync.testing import installation, nmi_details

from .conftest import PARTICIPANT, build_settings

HELD = "8001000001"  # registered at the simulator before each table row
NEW = "8001000002"

ROUTES = {"GET": "nmi_get", "POST": "nmi_create", "PUT": "nmi_update"}
CALLS: dict[str, Callable[[AemoClient], Awaitable[Any]]] = {
    "GET": lambda c: c.nmi.get(HELD),
    "POST": lambda c: c.nmi.create(nmi_details(NEW)),
    "PUT": lambda c: c.nmi.update(HELD, nmi_details(HELD, substation="Kewdale")),
}
OK_STATUS = {"GET": 200, "POST": 201, "PUT": 200}

# (fault kind, method, fault draws, expected outcome, requests AEMO receives)
FAILURE_TABLE = [
    ("503", "GET", ["503", None], "retried-then-ok", 2),
    ("503", "POST", ["503", None], "retried-then-ok", 2),  # 503: refused before processing
    ("503", "PUT", ["503", None], "retried-then-ok", 2),
    ("500", "GET", ["500", None], "retried-then-ok", 2),
    ("500", "POST", ["500"], "AmbiguousWriteError", 1),  # may have been applied: never repeated
    ("500", "PUT", ["500"], "AmbiguousWriteError", 1),
    ("drop", "GET", ["drop", None], "retried-then-ok", 2),
    ("drop", "POST", ["drop"], "AmbiguousWriteError", 1),
    ("drop", "PUT", ["drop"], "AmbiguousWriteError", 1),
    ("drop_after_apply", "GET", ["drop_after_apply", None], "retried-then-ok", 2),
    ("drop_after_apply", "POST", ["drop_after_apply"], "AmbiguousWriteError", 1),
    ("drop_after_apply", "PUT", ["drop_after_apply"], "AmbiguousWriteError", 1),  # aiohttp's own re-send is off
    ("503", "GET", None, "RetriesExhausted", 4),  # None: fault_rate 1.0, every attempt fails
    ("500", "GET", None, "RetriesExhausted", 4),
    ("drop", "GET", None, "RetriesExhausted", 4),
    ("503", "POST", None, "RetriesExhausted", 4),
]


@pytest.mark.parametrize(("kind", "method", "draws", "expected", "requests"), FAILURE_TABLE)
async def test_failure_table(fault_seed: Callable[..., int], kind: str, method: str, draws: list[str | None] | None,
                             expected: str, requests: int) -> None:
    """Each (fault, method) gives the documented outcome: GETs retry through every transient
    fault; POST/PUT retry only on 503 (not processed) and otherwise raise AmbiguousWriteError at
    once, after exactly one request reached AEMO; persistent faults end in RetriesExhausted after
    max_retries (3) retries."""
    rate, seed = (1.0, 1) if draws is None else (0.5, fault_seed(draws))
    config = SimulatorConfig(participant_id=PARTICIPANT, fault_rate=rate, fault_kinds=(kind,), seed=seed)
    async with run_simulator(config) as sim:
        sim.state.create_nmi(nmi_details(HELD))
        async with AemoClient(build_settings(sim)) as client:
            if expected == "retried-then-ok":
                response = await CALLS[method](client)
                assert response.status == OK_STATUS[method]
                assert response.transaction_id
                assert client.transport.stats.retries == 1
            else:
                error = {"AmbiguousWriteError": AmbiguousWriteError, "RetriesExhausted": RetriesExhausted}[expected]
                with pytest.raises(error) as caught:
                    await CALLS[method](client)
                assert type(caught.value) is error
                if kind in ("500", "503"):
                    assert caught.value.status == int(kind) and caught.value.transaction_id
        assert sim.state.count(route=ROUTES[method], method=method) == requests


async def test_write_dropped_after_apply_was_applied_exactly_once(fault_seed: Callable[..., int]) -> None:
    """Why writes are not repeated: AEMO applied the create before the connection dropped, so
    a blind retry would have been a duplicate create. The caller gets AmbiguousWriteError and
    AEMO holds exactly one create."""
    config = SimulatorConfig(participant_id=PARTICIPANT, fault_rate=1.0, fault_kinds=("drop_after_apply",), seed=1)
    async with run_simulator(config) as sim:
        async with AemoClient(build_settings(sim)) as client:
            with pytest.raises(AmbiguousWriteError):
                await client.installation.create(installation(NEW))  # 422 inside, but the answer is lost
            with pytest.raises(AmbiguousWriteError):
                await client.nmi.create(nmi_details(NEW))
        assert sim.state.nmi_creates[NEW] == 1 and NEW in sim.state.nmis


@pytest.mark.parametrize("sim_options", [{"rate_limit_per_minute": 1}])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_429_is_retried_for_reads_and_writes_then_exhausted(sim: Simulator, client: AemoClient,
                                                                  method: str) -> None:
    """429 means AEMO did not process the request, so even a POST is retried; persistent
    throttling ends in RetriesExhausted(status=429) and every 429 is counted."""
    await client.nmi.get(HELD)  # uses the minute's only slot
    with pytest.raises(RetriesExhausted) as caught:
        await CALLS[method](client)
    assert caught.value.status == 429
    assert client.transport.stats.throttled == sim.state.throttled_total == 4
    assert sim.state.count(route=ROUTES[method], status=429) == 4


@pytest.mark.parametrize("sim_options", [{"rate_limit_per_minute": 1, "retry_after_seconds": 7}])
async def test_retry_after_is_read_and_carried(sim: Simulator, client: AemoClient) -> None:
    """A Retry-After on the 429 is honoured (capped by retry_backoff_max_seconds, tiny here) and
    handed to the caller on RetriesExhausted, so the engine can schedule the record."""
    await client.nmi.get(HELD)
    with pytest.raises(RetriesExhausted) as caught:
        await client.nmi.get(HELD)
    assert caught.value.retry_after == 7.0


async def test_forbidden_is_fatal_and_not_retried(sim: Simulator, settings_for: Callable[..., Settings]) -> None:
    """403 (participant not permitted) is a FatalError naming status, method, path and the
    transactionId; it is sent once, never looped."""
    async with AemoClient(settings_for(participant_id="SOMEONE_ELSE")) as client:
        with pytest.raises(FatalError) as caught:
            await client.nmi.get(HELD)
    message = str(caught.value)
    assert "403" in message and "GET" in message and f"/nmi-details/{HELD}" in message
    assert caught.value.transaction_id and caught.value.transaction_id in message
    assert sim.state.count(route="nmi_get") == 1


async def test_method_not_allowed_is_fatal(sim: Simulator, client: AemoClient) -> None:
    """405 is a client bug: FatalError at once."""
    with pytest.raises(FatalError) as caught:
        await client.transport.request("nmi", "DELETE", f"/nmi-details/{HELD}", nmi=HELD, operation="test")
    assert caught.value.status == 405
    assert client.transport.stats.retries == 0


@pytest.mark.parametrize(
    ("status", "method", "outcome"),
    [
        (200, "GET", "response"), (201, "POST", "response"), (204, "PUT", "response"),
        (400, "POST", "response"), (404, "GET", "response"), (404, "PUT", "response"),
        (409, "POST", "response"), (413, "PUT", "response"), (422, "POST", "response"),
        (401, "GET", "refresh_token"),
        (403, "GET", "fatal"), (405, "POST", "fatal"), (411, "PUT", "fatal"), (415, "POST", "fatal"),
        (301, "GET", "fatal"), (418, "GET", "fatal"),
        (408, "POST", "retry_safe"), (429, "POST", "retry_safe"), (503, "PUT", "retry_safe"),
        (500, "POST", "retry"), (502, "PUT", "retry"), (504, "GET", "retry"), (599, "GET", "retry"),
    ],
)
def test_status_classification(status: int, method: str, outcome: str) -> None:
    """The status table: business answers are returned, 401 refreshes, client bugs are fatal,
    408/429/503 are safe to repeat even for writes, other 5xx only for reads."""
    assert classify_status(status, method) == outcome


async def test_business_answers_come_back_as_responses(sim: Simulator, client: AemoClient) -> None:
    """404, 422 and 400 are AEMO's verdicts on the record, returned for the engine to record."""
    assert (await client.nmi.get(NEW)).status == 404
    assert (await client.nmi.update(NEW, nmi_details(NEW))).status == 404
    assert (await client.nmi.create(nmi_details(NEW))).status == 201
    duplicate = await client.nmi.create(nmi_details(NEW))
    assert duplicate.status == 422 and duplicate.errors[0].code == "1001"
    schema = await client.nmi.create({**nmi_details("8001000003"), "colour": "blue"})
    assert schema.status == 400 and schema.errors[0].code == "1020"
    assert client.transport.stats.retries == 0


@pytest.mark.parametrize("sim_options", [{"max_payload_bytes": 2000}])
async def test_413_from_aemo_is_a_response(sim: Simulator, settings_for: Callable[..., Settings]) -> None:
    """If AEMO's limit is lower than ours, its 413 comes back as a business answer."""
    async with AemoClient(settings_for(compress_requests=False)) as client:
        response = await client.nmi.create(nmi_details(NEW, substation="x" * 3000))
    assert response.status == 413


async def test_connection_refused_is_retried_even_for_writes(sim: Simulator, client: AemoClient) -> None:
    """Refused connections prove nothing was sent: POST is retried like GET, then RetriesExhausted
    (never AmbiguousWriteError)."""
    await client.check_credentials()
    await sim.stop()
    for call in (CALLS["GET"], CALLS["POST"]):
        with pytest.raises(RetriesExhausted) as caught:
            await call(client)
        assert type(caught.value) is RetriesExhausted
    assert client.transport.stats.refused == 8


async def test_connection_refused_then_back_succeeds(sim: Simulator, client: AemoClient) -> None:
    """After an outage the same client carries on: the simulator restarts on the same port."""
    await client.check_credentials()
    await sim.stop()
    with pytest.raises(RetriesExhausted):
        await client.nmi.get(HELD)
    await sim.start()
    assert (await client.nmi.create(nmi_details(NEW))).status == 201


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_timeouts(sim: Simulator, settings_for: Callable[..., Settings], method: str) -> None:
    """A request unanswered within request_timeout_seconds: GETs retry then RetriesExhausted,
    writes raise AmbiguousWriteError at once (AEMO may still apply them)."""
    async with AemoClient(settings_for(request_timeout_seconds=0.05, max_retries=1)) as client:
        await client.check_credentials()
        sim.config.latency_seconds = 0.5
        expected = RetriesExhausted if method == "GET" else AmbiguousWriteError
        with pytest.raises(expected):
            await CALLS[method](client)
    assert client.transport.stats.timeouts == (2 if method == "GET" else 1)


@pytest.mark.parametrize("compress", [True, False])
async def test_bodies_are_json_with_content_length_compressed_or_not(sim: Simulator,
                                                                    settings_for: Callable[..., Settings],
                                                                    compress: bool) -> None:
    """Bodies go out as JSON with a Content-Length (the simulator answers 411 to chunked bodies and
    415 to a wrong Content-Type or encoding), gzip-compressed or plain; both are accepted, and the
    required headers (participant id, market) pass the simulator's checks."""
    async with AemoClient(settings_for(compress_requests=compress)) as client:
        assert (await client.nmi.create(nmi_details(NEW))).status == 201
        assert (await client.installation.create(installation(NEW))).status == 201
    assert sim.state.count(status=411) == sim.state.count(status=415) == sim.state.count(status=400) == 0


async def test_payload_too_large_is_never_sent(sim: Simulator, settings_for: Callable[..., Settings]) -> None:
    """An uncompressed body over max_payload_bytes raises PayloadTooLarge naming its size, before
    any request (not even a token fetch) reaches AEMO."""
    big = installation(NEW, comments="x" * 5000)
    before = sim.state.requests_total
    async with AemoClient(settings_for(max_payload_bytes=4000)) as client:
        with pytest.raises(PayloadTooLarge) as caught:
            await client.installation.create(big)
    assert "bytes" in str(caught.value) and "4,000" in str(caught.value)
    assert sim.state.requests_total == before


async def test_one_log_event_per_response_without_secrets(sim: Simulator, client: AemoClient) -> None:
    """Each answer is logged once with api, method, nmi, operation, status, transactionId and
    attempt; no event carries the token, the Authorization header or the client secret."""
    with capture_logs() as logs:
        await client.nmi.create(nmi_details(NEW))
        await client.nmi.get(NEW)
    token = await client.tokens.token()
    responses = [e for e in logs if e["event"] == "aemo.response"]
    assert len(responses) == 2
    create = responses[0]
    assert {k: create[k] for k in ("api", "method", "nmi", "operation", "status", "attempt")} == {
        "api": "nmi", "method": "POST", "nmi": NEW, "operation": "nmi.create", "status": 201, "attempt": 1}
    assert create["transactionId"]
    text = str(logs)
    assert token not in text and "Bearer" not in text and "demo-secret" not in text


@pytest.mark.parametrize("sim_options", [{"fault_rate": 1.0, "fault_kinds": ("500",)}])
async def test_retriable_errors_name_no_secret(sim: Simulator, client: AemoClient) -> None:
    """Raised errors describe status and path, never the Authorization header or the secret."""
    with pytest.raises(RetriesExhausted) as caught:
        await client.nmi.get(HELD)
    token = await client.tokens.token()
    assert token not in repr(caught.value) and "Bearer" not in str(caught.value)
    assert "demo-secret" not in str(caught.value)
